-- ---------------------------------------------------------------------------
-- Verdicts: what a bounce or deferral says about the address
-- ---------------------------------------------------------------------------

-- The categories every bounce and deferral falls in (src/verdict/).  Only an
-- address_fault category says the address itself is bad (the mailbox or its
-- domain does not exist, is disabled or has moved): only those bounces mark
-- a carrier hard_bounced and suppress the address.  A block category is a
-- refusal of the sender (its IP, domain, reputation, authentication or
-- content): its bounces count toward pausing the operator, its deferrals
-- toward slowing it.  A throttle category (rate limits) counts toward
-- slowing the operator only.
CREATE TABLE pw.bounce_categories (
    category      text PRIMARY KEY
                  CONSTRAINT bounce_categories_category_format
                  CHECK (category ~ '^[a-z][a-z0-9_]*$'),
    address_fault boolean NOT NULL DEFAULT false,
    block         boolean NOT NULL DEFAULT false,
    throttle      boolean NOT NULL DEFAULT false,
    description   text NOT NULL,
    seeded        boolean NOT NULL DEFAULT false,
    CONSTRAINT bounce_categories_fault_or_block
        CHECK (NOT (address_fault AND (block OR throttle)))
);

INSERT INTO pw.bounce_categories (category, address_fault, block, throttle, description, seeded)
SELECT category, af, block, throttle, description, true FROM (VALUES
    ('bad_mailbox',        true,  false, false, 'the mailbox does not exist (RFC 3463 X.1.1, X.1.3)'),
    ('bad_domain',         true,  false, false, 'the domain does not exist or accepts no mail (X.1.2, X.1.10 null MX, X.4.4)'),
    ('inactive_mailbox',   true,  false, false, 'the mailbox exists but is disabled, suspended or closed (X.2.1, X.7.13)'),
    ('mailbox_moved',      true,  false, false, 'the mailbox has moved with no forwarding address (X.1.6)'),
    ('unreachable_domain', true,  false, false, 'expired after every attempt failed to reach the domain''s MX (timeouts, refused connections, no route, host not found)'),
    ('mailbox_full',       false, false, false, 'the mailbox is over quota (X.2.2): the address exists'),
    ('blocklisted',        false, true,  false, 'the sending IP or domain is on a blocklist (Spamhaus, SORBS, Barracuda, a provider''s own list)'),
    ('reputation',         false, true,  false, 'the sender''s reputation, volume or complaints: refused or deferred by the receiver'),
    ('policy',             false, true,  false, 'refused by the receiver''s policy (sender, PTR/HELO, a rejection at connect, at MAIL FROM, at DATA)'),
    ('spam_content',       false, true,  false, 'the message was judged spam, or its content or attachment refused'),
    ('authentication',     false, true,  false, 'SPF, DKIM or DMARC failed, or the sender is unauthenticated (X.7.20-X.7.27)'),
    ('rate_limited',       false, false, true,  'too many messages, recipients or connections: the receiver throttles the sender'),
    ('greylisted',         false, false, false, 'greylisting: a temporary refusal every new sender gets'),
    ('relaying_denied',    false, false, false, 'the receiving host does not accept mail for this domain (relay access denied)'),
    ('routing',            false, false, false, 'the MX did not answer: timeout, refused connection, no route, DNS failure (one attempt)'),
    ('message_expired',    false, false, false, 'the message expired in the queue after deferrals that were not the address''s fault'),
    ('protocol_error',     false, false, false, 'an SMTP protocol, size, TLS or connection failure during the conversation'),
    ('other',              false, false, false, 'no rule matched: undetermined, never the address''s fault')
) AS s (category, af, block, throttle, description);

-- Ordered rules: the first rule whose every given part matches names the
-- category (no rule matches: 'other').  A rule a user inserts or edits
-- (seeded = false) comes before every shipped one; within each group, by
-- position, then name.  status_pattern and code_pattern must match the
-- whole enhanced status (dsn=, as 5.1.1) and the whole SMTP reply code
-- (550); reply_pattern is searched for in the remote server's reply (or the
-- MTA's own text when there is no reply), case-insensitively.  Patterns are
-- Hyperscan regular expressions (PCRE syntax without back-references or
-- look-around).  stage is where in the SMTP conversation the reply came:
-- connect (the greeting, or no connection), helo, mail (MAIL FROM), rcpt
-- (RCPT TO), data (DATA or end of DATA), or any.
CREATE TABLE pw.bounce_rules (
    name           text PRIMARY KEY
                   CONSTRAINT bounce_rules_name_format CHECK (name ~ '^[a-z0-9][a-z0-9_.-]*$'),
    position       integer NOT NULL DEFAULT 0,
    status_pattern text,
    code_pattern   text,
    reply_pattern  text,
    stage          text NOT NULL DEFAULT 'any'
                   CONSTRAINT bounce_rules_stage_known
                   CHECK (stage IN ('any', 'connect', 'helo', 'mail', 'rcpt', 'data')),
    category       text NOT NULL REFERENCES pw.bounce_categories (category) ON UPDATE CASCADE,
    note           text,
    seeded         boolean NOT NULL DEFAULT false,
    CONSTRAINT bounce_rules_patterns_nonempty
        CHECK (status_pattern <> '' AND code_pattern <> '' AND reply_pattern <> '')
);

-- Checks every pattern of a rule row (compiles it): an invalid pattern is
-- refused when it is written, not at the next ingest.
CREATE FUNCTION pw.bounce_rules_check() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'pw_bounce_rules_check';

-- Tells every session that the rules changed: their compiled rules are
-- rebuilt at the next classification.
CREATE FUNCTION pw.bounce_rules_changed() RETURNS trigger
LANGUAGE c AS 'MODULE_PATHNAME', 'pw_bounce_rules_changed';

CREATE TRIGGER bounce_rules_check BEFORE INSERT OR UPDATE ON pw.bounce_rules
    FOR EACH ROW EXECUTE FUNCTION pw.bounce_rules_check();
CREATE TRIGGER bounce_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pw.bounce_rules
    FOR EACH STATEMENT EXECUTE FUNCTION pw.bounce_rules_changed();
CREATE TRIGGER bounce_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pw.bounce_categories
    FOR EACH STATEMENT EXECUTE FUNCTION pw.bounce_rules_changed();

-- The category of a bounce or deferral: its enhanced status (dsn, may be
-- NULL) and its reply or reason text as Postfix logs it (host H[IP] said:
-- ... (in reply to RCPT TO command)), or a DSN's Diagnostic-Code.
CREATE FUNCTION pw.classify_bounce(dsn text, reply text)
RETURNS text
LANGUAGE c STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_classify_bounce';

-- The parts of a reply the rules are matched on: the SMTP code, the
-- enhanced status found in the reply, the stage and the remote reply text.
CREATE FUNCTION pw.bounce_reply_parts(reply text,
    OUT code text, OUT reply_status text, OUT stage text, OUT remote_reply text)
RETURNS record
LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
AS 'MODULE_PATHNAME', 'pw_bounce_reply_parts';

-- The rules are configuration every role may read (pw.classify_bounce()
-- and the ingest read them as the caller); only their owner changes them.
GRANT SELECT ON pw.bounce_categories, pw.bounce_rules TO PUBLIC;
REVOKE ALL ON FUNCTION pw.bounce_rules_check() FROM PUBLIC;
REVOKE ALL ON FUNCTION pw.bounce_rules_changed() FROM PUBLIC;

SELECT pg_catalog.pg_extension_config_dump('pw.bounce_categories', 'WHERE NOT seeded');
SELECT pg_catalog.pg_extension_config_dump('pw.bounce_rules', 'WHERE NOT seeded');
