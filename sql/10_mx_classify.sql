-- MX classification: suffix rules, the ICANN registrable domain, validation
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pw_deliverability;
RESET client_min_messages;

-- real provider MX host names and what they classify as
CREATE TEMP TABLE mx_cases (host text, want text);
INSERT INTO mx_cases VALUES
    ('aspmx.l.google.com',                          'google'),
    ('ALT1.ASPMX.L.GOOGLE.COM.',                    'google'),
    ('smtp.google.com',                             'google'),
    ('gmail-smtp-in.l.google.com',                  'google'),
    ('aspmx2.googlemail.com',                       'google'),
    ('contoso-com.mail.protection.outlook.com',     'microsoft'),
    ('hotmail-com.olc.protection.outlook.com',      'microsoft'),
    ('contoso-com.l-v1.mx.microsoft',               'microsoft'),
    ('mx0a-00123456.pphosted.com',                  'proofpoint'),
    ('mx1-us1.ppe-hosted.com',                      'proofpoint'),
    ('us-smtp-inbound-1.mimecast.com',              'mimecast'),
    ('za-smtp-inbound-1.mimecast.co.za',            'mimecast'),
    ('mx1.acme.iphmx.com',                          'cisco'),
    ('d123456a.ess.barracudanetworks.com',          'barracuda'),
    ('cluster1.us.messagelabs.com',                 'broadcom'),
    ('mx1.secureserver.net',                        'godaddy'),
    ('mx.zoho.com',                                 'zoho'),
    ('mx2.zoho.eu',                                 'zoho'),
    ('mx.zoho.com.au',                              'zoho'),
    ('mx1.emailsrvr.com',                           'rackspace'),
    ('mta7.am0.yahoodns.net',                       'mx:yahoodns.net'),
    ('mx-aol.mail.gm0.yahoodns.net',                'mx:yahoodns.net'),
    ('ff-ip4-mx-vip1.prodigy.net',                  'mx:prodigy.net'),
    ('mx01.mail.icloud.com',                        'mx:icloud.com'),
    ('mx1a1.comcast.net',                           'mx:comcast.net'),
    ('mx.dc1.charter.net',                          'mx:charter.net'),
    ('mx01.earthlink-vadesecure.net',               'mx:earthlink-vadesecure.net'),
    ('mail.example.co.uk',                          'mx:example.co.uk'),
    ('inbound-smtp.us-east-1.amazonaws.com',        'mx:amazonaws.com'),
    ('mx.example.github.io',                        'mx:github.io'),
    ('mx1.example.com.au',                          'mx:example.com.au'),
    ('mail.bücher.de',                              'mx:xn--bcher-kva.de'),
    ('MAIL.xn--bcher-kva.DE',                       'mx:xn--bcher-kva.de'),
    ('mx.example.xn--p1ai',                         'mx:example.xn--p1ai'),
    ('mx.example.unknowntld',                       'mx:example.unknowntld'),
    -- a host that merely contains a rule's suffix is not under it
    ('mx.notgoogle.com',                            'mx:notgoogle.com'),
    ('mx.google.com.evil.net',                      'mx:evil.net');

SELECT host, pw.classify_mx(ARRAY[host]) AS got, want
  FROM mx_cases WHERE pw.classify_mx(ARRAY[host]) IS DISTINCT FROM want;
SELECT count(*) AS cases FROM mx_cases;

-- the primary (first) exchange decides; invalid exchanges are skipped
SELECT pw.classify_mx(ARRAY['aspmx.l.google.com', 'mx1.emailsrvr.com']) AS google_first,
       pw.classify_mx(ARRAY['mx1.emailsrvr.com', 'aspmx.l.google.com']) AS rackspace_first,
       pw.classify_mx(ARRAY['bad_host.example.com', 'mx1.emailsrvr.com']) AS invalid_skipped,
       pw.classify_mx(ARRAY[NULL, 'mx1.emailsrvr.com']) AS null_skipped;
-- null MX (RFC 7505) and nothing usable: none; empty: unknown
SELECT pw.classify_mx(ARRAY['.']) AS null_mx, pw.classify_mx(ARRAY['']) AS empty_host,
       pw.classify_mx(ARRAY['-bad-.com']) AS only_invalid,
       pw.classify_mx(ARRAY[]::text[]) AS no_hosts, pw.classify_mx(NULL) AS null_arg;

-- the longest suffix rule wins, and rules are read from the table
INSERT INTO pw.mx_suffix_rules VALUES ('eu.mimecast.com', 'mimecast_eu', 'test');
SELECT pw.classify_mx('{eu-smtp-1.eu.mimecast.com}'), pw.classify_mx('{us-smtp-1.mimecast.com}');
DELETE FROM pw.mx_suffix_rules WHERE suffix = 'eu.mimecast.com';

-- registrable domains under the ICANN section only
SELECT h, pw.registrable_domain(h)
  FROM unnest(ARRAY['mta7.am0.yahoodns.net', 'a.b.example.co.uk', 'example.com', 'co.uk',
                    'x.y.s3.amazonaws.com', 'foo.blogspot.com', 'www.example.ck', 'a.b.c.kawasaki.jp'])
       AS h;

-- the domain validator
SELECT d, pw.normalize_domain(d) AS normal, pw.domain_problem(d) AS problem
  FROM unnest(ARRAY['Example.COM', 'example.com.', 'bücher.de', 'ÄRZTE.example', 'xn--bcher-kva.de',
                    'münchen.de', '例え.jp', 'localhost', '', '.', 'a..b.com', '-a.com', 'a-.com',
                    'under_score.com', 'space here.com', '1.2.3.4', '[1.2.3.4]', 'a.123',
                    'bad' || chr(128) || '.com', E'x\\ny.com']) AS d;
-- length limits: 63 octets a label, 253 a name
SELECT length(d) AS len, length(pw.normalize_domain(d)) AS normal_len, pw.domain_problem(d) AS problem
  FROM unnest(ARRAY[repeat('a', 63) || '.com', repeat('a', 64) || '.com',
                    repeat('abcdefghi.', 25) || 'com', repeat('abcdefghi.', 26) || 'com',
                    repeat('ü', 60) || '.de']) AS d;
SELECT pw.normalize_domain(convert_from('\x6dc3bc6e6368656e2e6465', 'UTF8')) AS munchen;
