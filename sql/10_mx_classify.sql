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

-- IDNA2008 through libidn2, with the non-transitional UTS #46 mapping:
-- ignored characters (soft hyphen, zero-width space) are dropped, so a label
-- made only of them is empty; what IDNA2008 disallows is refused; full-width
-- letters and ideographic full stops are mapped
SELECT what, pw.normalize_domain(d) AS normal, pw.domain_problem(d) AS problem
  FROM (VALUES ('soft hyphen alone', E'\u00ad.com'), ('soft hyphen inside', E'a\u00ad.com'),
               ('zero-width space alone', E'\u200b.com'), ('zero-width space inside', E'a\u200b.com'),
               ('zero-width joiner', E'a\u200d.com'), ('leading combining mark', E'\u0301a.com'),
               ('snowman', E'\u2603.com'), ('bidi: digits only', E'\u0661\u0662\u0663.com'),
               ('bad A-label beside a U-label', 'xn--zz.bücher.de'),
               ('hyphens 3 and 4 beside a U-label', 'ab--cd.bücher.de'),
               ('underscore beside a U-label', 'a_b.bücher.de'),
               ('ideographic full stop', E'b\u00fccher\u3002de'),
               ('ideographic full stop at the end', E'b\u00fccher.de\u3002'),
               ('two final full stops', E'b\u00fccher.de\u3002.'),
               ('full-width letters', E'\uff22\uff35\uff23\uff28\uff25\uff32.de')) AS t(what, d);
-- valid IDNs keep the A-labels the hand-written encoder gave them
CREATE TEMP TABLE idn_cases (name text, want text);
INSERT INTO idn_cases VALUES
    ('bücher.de', 'xn--bcher-kva.de'), ('Bücher.DE', 'xn--bcher-kva.de'),
    ('bücher.example', 'xn--bcher-kva.example'), ('mail.bücher.de', 'mail.xn--bcher-kva.de'),
    ('münchen.de', 'xn--mnchen-3ya.de'), ('ÄRZTE.example', 'xn--rzte-koa.example'),
    ('ÉXAMPLE.fr.', 'xn--xample-9ua.fr'), ('例え.jp', 'xn--r8jz45g.jp'),
    ('пример.рф', 'xn--e1afmkfd.xn--p1ai'), ('ПРИМЕР.РФ', 'xn--e1afmkfd.xn--p1ai'),
    ('ελληνικά.gr', 'xn--hxargifdar.gr'), ('ΕΛΛΆΔΑ.gr', 'xn--hxakic4aa.gr'),
    ('中国.cn', 'xn--fiqs8s.cn'), ('mail.日本.jp', 'mail.xn--wgv71a.jp'),
    ('مثال.com', 'xn--mgbh0fb.com'), ('דוגמה.co.il', 'xn--6dbbec0c.co.il'),
    ('उदाहरण.भारत', 'xn--p1b6ci4b4b3a.xn--h2brj9c'), ('ตัวอย่าง.th', 'xn--72c1a1bt4awk9o.th'),
    ('한국.kr', 'xn--3e0b707e.kr'), ('straße.de', 'xn--strae-oqa.de'), ('faß.de', 'xn--fa-hia.de'),
    ('español.es', 'xn--espaol-zwa.es'), ('çà.fr', 'xn--0can.fr'), ('ÆRØ.dk', 'xn--r-3fa9c.dk'),
    ('ıstanbul.tr', 'xn--stanbul-qfb.tr'), ('İstanbul.tr', 'xn--istanbul-o0e.tr'),
    ('xn--bcher-kva.bücher.de', 'xn--bcher-kva.xn--bcher-kva.de');
SELECT name, pw.normalize_domain(name) AS got, want
  FROM idn_cases WHERE pw.normalize_domain(name) IS DISTINCT FROM want;
SELECT count(*) AS idn_cases FROM idn_cases;
