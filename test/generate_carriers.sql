-- Sample-data generator for pw_deliverability tests, the demo and benchmarks.
--
--   \i test/generate_carriers.sql
--   SELECT pw_generate_carriers(1600000, seed => 42);
--
-- Creates (if missing) public.fmcsa_carriers with the default carriers
-- contract plus verify_sent_at (the verification stream's sent column), and
-- public.pw_sample_domains, the ground truth a DNS fixture serves: each
-- recipient domain's real operator and primary MX host.  Deterministic for a
-- given (n, seed): every value is a hash of the row number and the seed.
--
-- Modelled on the live numbers in the seeds: results catch_all ~69%,
-- mx_unreachable ~28%, smtp_valid <1%, dead ~3%; ~21% of carriers untagged;
-- mx:yahoodns.net ~18%, icloud/comcast/charter/... in proportion; the big
-- operators; a long tail of self-hosted mx: operators; about half sent.

-- Uniform float in [0,1) from (i, seed, stream).
CREATE OR REPLACE FUNCTION pw_gen_u(i bigint, seed integer, stream integer)
RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ((hashint8extended(i, seed::bigint * 64 + stream) >> 12) & 4503599627370495)::float8
       / 4503599627370496.0;

CREATE OR REPLACE FUNCTION pw_generate_carriers(n bigint, seed integer DEFAULT 42,
                                                sent_fraction float8 DEFAULT 0.5,
                                                untagged_fraction float8 DEFAULT 0.21)
RETURNS bigint
LANGUAGE plpgsql AS
$$
DECLARE
    -- operator mix of recipient domains (weights of the tagged population)
    ops     text[]   := ARRAY['mx:yahoodns.net', 'mx:icloud.com', 'mx:comcast.net',
                              'mx:charter.net', 'mx:centurylink.net', 'mx:windstream.net',
                              'mx:tds.net', 'mx:earthlink-vadesecure.net',
                              'google', 'microsoft', 'proofpoint', 'mimecast', 'barracuda',
                              'cisco', 'broadcom', 'godaddy', 'zoho', 'rackspace',
                              'none', 'tail'];
    weights float8[] := ARRAY[0.228, 0.020, 0.010, 0.005, 0.0025, 0.0025, 0.0015, 0.001,
                              0.160, 0.090, 0.012, 0.005, 0.005, 0.004, 0.003,
                              0.060, 0.007, 0.007, 0.006, 0.0];
    bounds  float8[] := ARRAY[0.0];
    acc     float8 := 0;
    results text[]   := ARRAY['catch_all_domain', 'mx_unreachable', 'smtp_valid', 'send_confirmed',
                              'no_mx_records', 'invalid_syntax', 'smtp_rejected_550', 'hard_bounced'];
    rweights float8[] := ARRAY[0.690, 0.280, 0.008, 0.002, 0.008, 0.004, 0.006, 0.002];
    rbounds float8[] := ARRAY[0.0];
    ndomains bigint := greatest(n * 6 / 10, 16);
    inserted bigint;
BEGIN
    IF n < 0 THEN
        RAISE EXCEPTION 'n must be >= 0';
    END IF;
    FOR k IN 1 .. array_length(weights, 1) - 2 LOOP
        acc := acc + weights[k];
        bounds := bounds || acc;
    END LOOP;
    -- the last entry ('tail') takes what is left
    acc := acc + weights[array_length(weights, 1) - 1];
    bounds := bounds || acc;
    acc := 0;
    FOR k IN 1 .. array_length(rweights, 1) - 1 LOOP
        acc := acc + rweights[k];
        rbounds := rbounds || acc;
    END LOOP;

    CREATE TABLE IF NOT EXISTS public.fmcsa_carriers (
        id                  bigint PRIMARY KEY,
        email               text,
        email_verify_result text,
        mx_provider         text,
        listmonk_sent_at    timestamptz,
        verify_sent_at      timestamptz
    );
    CREATE TABLE IF NOT EXISTS public.pw_sample_domains (
        idx        bigint PRIMARY KEY,
        domain     text NOT NULL UNIQUE,
        true_label text NOT NULL,
        mx_host    text,
        tagged     boolean NOT NULL
    );
    -- free-mail domains first (literal blocked or big), then generated ones
    INSERT INTO public.pw_sample_domains (idx, domain, true_label, mx_host, tagged) VALUES
        (0, 'gmail.com',   'google',          'gmail-smtp-in.l.google.com', true),
        (1, 'yahoo.com',   'mx:yahoodns.net', 'mta5.am0.yahoodns.net',      true),
        (2, 'aol.com',     'mx:yahoodns.net', 'mx-aol.mail.gm0.yahoodns.net', true),
        (3, 'icloud.com',  'mx:icloud.com',   'mx01.mail.icloud.com',       true),
        (4, 'comcast.net', 'mx:comcast.net',  'mx1a1.comcast.net',          true),
        (5, 'hotmail.com', 'microsoft',       'hotmail-com.olc.protection.outlook.com', true),
        (6, 'att.net',     'mx:yahoodns.net', 'ff-ip4-mx-vip1.prodigy.net', true)
    ON CONFLICT (idx) DO NOTHING;

    INSERT INTO public.pw_sample_domains (idx, domain, true_label, mx_host, tagged)
    SELECT d, dom, lbl,
           CASE lbl
               WHEN 'google' THEN 'aspmx.l.google.com'
               WHEN 'microsoft' THEN replace(dom, '.', '-') || '.mail.protection.outlook.com'
               WHEN 'proofpoint' THEN 'mx0a-' || lpad((d % 99999)::text, 8, '0') || '.pphosted.com'
               WHEN 'mimecast' THEN 'us-smtp-inbound-' || (1 + d % 2) || '.mimecast.com'
               WHEN 'barracuda' THEN 'd' || (d % 999999) || 'a.ess.barracudanetworks.com'
               WHEN 'cisco' THEN 'mx1.c' || d || '.iphmx.com'
               WHEN 'broadcom' THEN 'cluster' || (1 + d % 9) || '.us.messagelabs.com'
               WHEN 'godaddy' THEN 'mx' || (1 + d % 2) || '.secureserver.net'
               WHEN 'zoho' THEN 'mx.zoho.com'
               WHEN 'rackspace' THEN 'mx' || (1 + d % 2) || '.emailsrvr.com'
               WHEN 'mx:yahoodns.net' THEN 'mta' || (5 + d % 3) || '.am0.yahoodns.net'
               WHEN 'mx:icloud.com' THEN 'mx0' || (1 + d % 2) || '.mail.icloud.com'
               WHEN 'mx:comcast.net' THEN 'mx1a1.comcast.net'
               WHEN 'mx:charter.net' THEN 'mx.dc1.charter.net'
               WHEN 'mx:centurylink.net' THEN 'mx.centurylink.net'
               WHEN 'mx:windstream.net' THEN 'mx.windstream.net'
               WHEN 'mx:tds.net' THEN 'mx.tds.net'
               WHEN 'mx:earthlink-vadesecure.net' THEN 'mx01.earthlink-vadesecure.net'
               WHEN 'none' THEN NULL
               ELSE 'mail.' || substr(lbl, 4)
           END,
           pw_gen_u(d, seed, 3) >= untagged_fraction
    FROM (
        SELECT d, 'c' || d || (ARRAY['.com', '.net', '.us', '.biz'])[1 + (d % 4)::int] AS dom,
               CASE WHEN op = 'tail'
                    THEN 'mx:host' || floor(pow(pw_gen_u(d, seed, 2), 2) * 5000)::int || '.net'
                    ELSE op END AS lbl
        FROM (
            SELECT d, ops[width_bucket(pw_gen_u(d, seed, 1), bounds)] AS op
            FROM generate_series(7, ndomains - 1) AS d
        ) a
    ) b
    ON CONFLICT (idx) DO NOTHING;

    INSERT INTO public.fmcsa_carriers
        (id, email, email_verify_result, mx_provider, listmonk_sent_at)
    SELECT c.i,
           CASE WHEN pw_gen_u(c.i, seed, 13) < 0.02 THEN 'DOT' ELSE 'dot' END
               || c.i || '@' || dom.domain,
           results[width_bucket(pw_gen_u(c.i, seed, 12), rbounds)],
           CASE WHEN dom.tagged THEN dom.true_label END,
           CASE WHEN pw_gen_u(c.i, seed, 14) < sent_fraction
                THEN now() - make_interval(secs => pw_gen_u(c.i, seed, 15) * 60 * 86400)
           END
    FROM (
        SELECT i,
               CASE WHEN pw_gen_u(i, seed, 10) < 0.04
                    THEN (hashint8extended(i, seed::bigint * 64 + 11) & 1048575) % 7
                    ELSE 7 + (hashint8extended(i, seed::bigint * 64 + 11) & 4503599627370495)
                             % (ndomains - 7)
               END AS d
        FROM generate_series(
            coalesce((SELECT max(id) FROM public.fmcsa_carriers), 0) + 1,
            coalesce((SELECT max(id) FROM public.fmcsa_carriers), 0) + n) AS i
    ) c
    JOIN public.pw_sample_domains dom ON dom.idx = c.d;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    ANALYZE public.fmcsa_carriers;
    RETURN inserted;
END
$$;
