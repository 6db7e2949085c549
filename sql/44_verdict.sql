-- Verdicts: the category of every bounce and deferral, by pw.bounce_rules
\getenv srcdir PWD
\set replies :srcdir '/test/fixtures/verdict/replies.tsv'

-- the categories: only a bad address is the address's fault
SELECT category, address_fault, block, throttle FROM pw.bounce_categories ORDER BY category;

-- real replies of the providers' public documentation, each with the
-- category it must get (test/fixtures/verdict/replies.tsv)
CREATE TEMP TABLE replies (dsn text, reply text, expected text);
SELECT format('COPY replies FROM %L WITH (FORMAT csv, DELIMITER E''\t'', QUOTE E''\b'')', :'replies') AS copy \gset
:copy
DELETE FROM replies WHERE dsn LIKE '#%';
SELECT count(*) >= 60 AS at_least_60, count(DISTINCT expected) AS categories FROM replies;
-- every reply gets its category (no rows: none differs)
SELECT dsn, left(reply, 100) AS reply, expected, pw.classify_bounce(dsn, reply) AS got
  FROM replies WHERE pw.classify_bounce(dsn, reply) IS DISTINCT FROM expected;
-- and the category of each does not depend on the dsn when the reply has its own
SELECT count(*) AS same_without_dsn
  FROM replies
 WHERE (pw.bounce_reply_parts(reply)).reply_status = dsn
   AND pw.classify_bounce(NULL, reply) = expected;
-- the misleading ones: address-like codes on a block, odd codes on a dead mailbox
SELECT expected, pw.classify_bounce(dsn, reply) AS got, left((pw.bounce_reply_parts(reply)).remote_reply, 60) AS reply
  FROM replies
 WHERE reply ~ '(S3150|dd This user|AS\(201806281\)|Not our Customer|IB607|SPAMHAUS-XBL|AUP#CDRBL|TSS09)'
 ORDER BY 1, 3;
-- none of the sender's problems is the address's fault
SELECT count(*) AS sender_problems_marked_address_fault
  FROM replies r JOIN pw.bounce_categories c ON c.category = pw.classify_bounce(r.dsn, r.reply)
 WHERE c.address_fault AND r.expected IN (SELECT category FROM pw.bounce_categories WHERE block OR throttle);

-- the parts a rule matches: code, status, stage, remote text
SELECT * FROM pw.bounce_reply_parts('host mx.example[192.0.2.1] said: 550-5.1.1 no 550 5.1.1 such user (in reply to RCPT TO command)');
SELECT * FROM pw.bounce_reply_parts('host mx.example[192.0.2.1] refused to talk to me: 554 go away');
SELECT * FROM pw.bounce_reply_parts('host mx.example[192.0.2.1] said: 421 4.7.0 later (in reply to MAIL FROM command)');
SELECT * FROM pw.bounce_reply_parts('host mx.example[192.0.2.1] said: 554 rejected (in reply to end of DATA command)');
SELECT * FROM pw.bounce_reply_parts('smtp; 550 5.1.1 <a@example.com>... User unknown');
SELECT * FROM pw.bounce_reply_parts('connect to mx.example[192.0.2.1]:25: Connection timed out');
SELECT * FROM pw.bounce_reply_parts('');
-- the stage counts: the same reply at RCPT TO and at end of DATA
SELECT pw.classify_bounce('5.1.1', 'host x[192.0.2.1] said: 550 5.1.1 user unknown (in reply to RCPT TO command)') AS at_rcpt,
       pw.classify_bounce('5.1.1', 'host x[192.0.2.1] said: 550 5.1.1 user unknown (in reply to end of DATA command)') AS at_data,
       pw.classify_bounce('5.1.1', 'host x[192.0.2.1] said: 550 5.1.1 user unknown (in reply to MAIL FROM command)') AS at_mail,
       pw.classify_bounce('5.1.1', 'host x[192.0.2.1] refused to talk to me: 550 5.1.1 user unknown') AS at_connect;
-- nothing known: other; nothing at all: NULL
SELECT pw.classify_bounce(NULL, 'something else entirely'), pw.classify_bounce('5.9.9', NULL),
       pw.classify_bounce(NULL, NULL) IS NULL AS null_in_null_out;

-- a user's rule wins over the shipped ones, takes effect at once, and an
-- edit of a shipped rule makes it the user's
INSERT INTO pw.bounce_rules (name, reply_pattern, category, note)
VALUES ('local.acme_gone', 'acme mailbox retired', 'inactive_mailbox', 'our partner''s wording');
SELECT pw.classify_bounce('5.7.1', 'host x[192.0.2.1] said: 550 5.7.1 acme mailbox retired (in reply to RCPT TO command)');
UPDATE pw.bounce_rules SET category = 'policy' WHERE name = 'comcast.not_customer';
SELECT seeded FROM pw.bounce_rules WHERE name = 'comcast.not_customer';
SELECT pw.classify_bounce('5.1.1', 'host mx1.comcast.net[96.114.157.80] said: 550 5.1.1 <a@comcast.net> Not our Customer (in reply to RCPT TO command)');
-- a rule on the SMTP code and the stage
INSERT INTO pw.bounce_rules (name, position, code_pattern, stage, category)
VALUES ('local.rcpt_553', 1, '553', 'rcpt', 'bad_mailbox');
SELECT pw.classify_bounce(NULL, 'host x[192.0.2.1] said: 553 sorry (in reply to RCPT TO command)') AS rcpt_553,
       pw.classify_bounce(NULL, 'host x[192.0.2.1] said: 553 sorry (in reply to MAIL FROM command)') AS mail_553;
-- a category's flags are read when the rules are compiled again
UPDATE pw.bounce_categories SET description = description || ' (local)' WHERE category = 'policy';
SELECT pw.classify_bounce('5.7.1', 'host x[192.0.2.1] said: 550 5.7.1 acme mailbox retired (in reply to RCPT TO command)');

-- bad rules are refused when written
INSERT INTO pw.bounce_rules (name, reply_pattern, category) VALUES ('local.bad', '(unclosed', 'other');
INSERT INTO pw.bounce_rules (name, reply_pattern, category) VALUES ('local.backref', '(a)\1', 'other');
INSERT INTO pw.bounce_rules (name, status_pattern, category) VALUES ('local.empty', '', 'other');
INSERT INTO pw.bounce_rules (name, reply_pattern, category) VALUES ('local.nocat', 'x', 'no_such_category');
INSERT INTO pw.bounce_rules (name, reply_pattern, stage, category) VALUES ('local.stage', 'x', 'quit', 'other');
INSERT INTO pw.bounce_categories (category, address_fault, block, description)
VALUES ('confused', true, true, 'both at once');
DELETE FROM pw.bounce_categories WHERE category = 'other';
SELECT pw.classify_bounce(NULL, 'x');
INSERT INTO pw.bounce_categories (category, description) VALUES ('other', 'back');
SELECT pw.classify_bounce(NULL, 'x');

-- user rows are dumped, shipped ones are not
SELECT name, seeded FROM pw.bounce_rules WHERE NOT seeded ORDER BY name;
SELECT c.relname, e.cond
  FROM pg_extension x, unnest(x.extconfig, x.extcondition) AS e (oid, cond)
  JOIN pg_class c ON c.oid = e.oid
 WHERE x.extname = 'pw_deliverability' AND c.relname IN ('bounce_rules', 'bounce_categories')
 ORDER BY 1;
DELETE FROM pw.bounce_rules WHERE name LIKE 'local.%';
UPDATE pw.bounce_rules SET category = 'bad_mailbox' WHERE name = 'comcast.not_customer';
