
-- ---------------------------------------------------------------------------
-- Descriptions (\d+, \df+, \dv+): one for every table, view and function.
-- The regress test 43_settings fails when an object of schema pw has none.
-- ---------------------------------------------------------------------------

-- Configuration
COMMENT ON TABLE pw.verify_results IS
    'Every email verification result the extension knows: dead results are never mailed by a campaign; verifiable dead ones may be mailed by a verification profile.';
COMMENT ON TABLE pw.operator_classes IS
    'The classes operators fall in (big, consumer, default); operators not in pw.operators are in the default class.';
COMMENT ON TABLE pw.operators IS
    'Operators (MX labels) whose class is not default.';
COMMENT ON TABLE pw.mx_suffix_rules IS
    'Which MX hosts belong to which operator label: a host matches a suffix it equals or ends with after a dot; the longest match wins.';
COMMENT ON TABLE pw.blocked_domains IS
    'Recipient domains never mailed, whatever their MX.';
COMMENT ON TABLE pw.suppressions IS
    'Addresses (normalised) never mailed again by any profile: hard bounces and opt-outs.';
COMMENT ON TABLE pw.carriers_config IS
    'The carriers contract, one row: the carriers table and its id, email, verification result and MX columns; checked against the catalog when changed.';
COMMENT ON TABLE pw.profiles IS
    'Send profiles: warmup, caps, pool, sent column (checked against the carriers table when set) and reputation brake of each stream.';
COMMENT ON TABLE pw.warmup_ramp IS
    'Daily cap per profile and operator class from a warmup day on.';
COMMENT ON TABLE pw.operator_ramp IS
    'Daily cap per profile and operator from a warmup day on, overriding the class ramp.';
COMMENT ON TABLE pw.maillogs IS
    'The mail logs to ingest, each mapped to the send profile whose traffic it records, with its ingest schedule.';

-- MX tagging
COMMENT ON TABLE pw.mx_domains IS
    'Every recipient domain the tagger has seen: its MX lookup outcome, label and when it is looked up next.';
COMMENT ON VIEW pw.mx_backlog IS
    'The tagging backlog in one row: untagged carriers and domains, unresolved, failing, due, invalid and cached domains.';
COMMENT ON VIEW pw.mx_labels IS
    'Carriers per MX label (NULL: untagged) with the label''s operator class.';
COMMENT ON VIEW pw.mx_failing IS
    'Domains whose MX lookups keep failing, worst first.';
COMMENT ON VIEW pw.mx_tag_progress IS
    'The tagging runs under way in the cluster, one row each (pw.mx_tag() callers and the background tagger): phase and counts so far; empty unless the library is preloaded.';

-- Mail logs and outcomes
COMMENT ON TABLE pw.maillog_files IS
    'Where the ingest of each mail log stands: file identity, offset after the last line applied, running totals and the tail bytes that recognise the file (pw.maillog_status shows it without the tail).';
COMMENT ON VIEW pw.maillog_status IS
    'pw.maillog_files without its tail bytes: where the ingest of each mail log stands.';
COMMENT ON TABLE pw.maillog_pending IS
    'Recipients seen deferred and not yet delivered or bounced, per queue id, until an expiry bounces them.';
COMMENT ON TABLE pw.deliveries IS
    'What the mail logs said about each address (normalised): sends, bounces, deferrals and confirmation.';
COMMENT ON TABLE pw.maillog_daily IS
    'Outcomes per day, operator and profile of the log: the input of the reputation brake.';
COMMENT ON VIEW pw.operator_outcomes IS
    'Outcomes per operator over all logs, with bounce and deferral rates.';
COMMENT ON VIEW pw.braked_operators IS
    'The operators the reputation brake pauses or slows now, for every profile.';

-- Functions: configuration and the carriers contract
COMMENT ON FUNCTION pw.operator_class(text) IS
    'The operator class of an MX label (NULL for NULL).';
COMMENT ON FUNCTION pw.normalize_email(text) IS
    'An address as the suppression list stores it: trimmed, lower case.';
COMMENT ON FUNCTION pw.email_domain(text) IS
    'The domain part of an address, normalised (NULL if empty).';
COMMENT ON FUNCTION pw.suppressions_normalize() IS
    'Trigger of pw.suppressions: stores the address normalised.';
COMMENT ON FUNCTION pw.profiles_check() IS
    'Trigger of pw.profiles: refuses unknown or dead sendable results and a sent column shared by a campaign and a verification profile.';
COMMENT ON FUNCTION pw.daily_caps(text, integer) IS
    'The daily caps of a profile on a warmup day, per operator class and per overridden operator.';
COMMENT ON FUNCTION pw.daily_cap(text, text, integer) IS
    'The daily cap of one operator label under a profile on a warmup day (NULL for an unknown profile).';
COMMENT ON FUNCTION pw.warmup_day(text) IS
    'The warmup day of a profile today (its warmup_start is day 1).';
COMMENT ON FUNCTION pw.carriers_check(name) IS
    'The carriers contract resolved against the catalog (and a sent column, if given), or an error naming what is missing.';
COMMENT ON FUNCTION pw.carriers_config_check() IS
    'Trigger of pw.carriers_config: the checks of pw.carriers_check() on the changed row, and a warning for each profile whose sent column the carriers table lacks.';
COMMENT ON FUNCTION pw.profiles_sent_column_check() IS
    'Trigger of pw.profiles: refuses a sent column that the configured carriers table lacks or holds with a type other than timestamptz.';
COMMENT ON FUNCTION pw.config_row_update() IS
    'Trigger of the configuration tables: an updated row becomes the user''s (seeded = false) and is dumped.';
COMMENT ON FUNCTION pw.config_row_insert() IS
    'Trigger of the configuration tables: a row with the key of a shipped row replaces that row in place.';

-- Functions: MX tagging
COMMENT ON FUNCTION pw.classify_mx(text[]) IS
    'The operator label of a domain from its MX hosts in preference order: a suffix rule of the primary host, else mx: and its registrable domain; none for a null MX.';
COMMENT ON FUNCTION pw.normalize_domain(text) IS
    'A host name in normal form (lower case, no trailing dot, IDN as A-labels), or NULL when it is not a valid host name.';
COMMENT ON FUNCTION pw.domain_problem(text) IS
    'Why a name is not a valid host name (NULL when it is).';
COMMENT ON FUNCTION pw.registrable_domain(text) IS
    'The registrable domain of a host under the ICANN section of the Public Suffix List.';
COMMENT ON FUNCTION pw.resolve_mx(text) IS
    'One DNS lookup: the MX records of a domain, lowest preference first.';
COMMENT ON FUNCTION pw.mx_tag(integer) IS
    'Tags up to max_domains untagged or stale recipient domains in this backend; returns the run''s counts.';
COMMENT ON FUNCTION pw.create_tagging_index() IS
    'Creates the partial index and statistics that keep finding untagged carriers cheap, and analyzes the carriers; returns the index''s name.';
COMMENT ON FUNCTION pw.mx_backlog_stats() IS
    'The tagging backlog in one row (the body of pw.mx_backlog).';
COMMENT ON FUNCTION pw.mx_tag_progress_rows() IS
    'The rows of pw.mx_tag_progress, read from shared memory (not executable by PUBLIC).';
COMMENT ON FUNCTION pw.mx_label_counts() IS
    'Carriers per MX label with the label''s operator class (the body of pw.mx_labels).';
COMMENT ON FUNCTION pw.wake_tagger() IS
    'Wakes the background tagger, e.g. after an import; false when none runs.';
COMMENT ON FUNCTION pw.tagger_pid() IS
    'The process id of the background tagger, or NULL when none runs.';

-- Functions: selection
COMMENT ON FUNCTION pw.select_sendable_carriers(integer, text, integer, boolean) IS
    'The carriers a run of a profile may mail, in id order, within the quota, caps, warmup holds and brake; with claim, marks them sent.';
COMMENT ON FUNCTION pw.selection_composition(integer, text, integer) IS
    'The dry run of a selection: one row per bucket with its candidates, allowance, selected count and brake.';
COMMENT ON FUNCTION pw.profile_pool(text) IS
    'The verification results a profile may select.';
COMMENT ON FUNCTION pw.selection_index_ddl(text, boolean) IS
    'The CREATE INDEX statements that keep a profile''s selection fast (concurrently, if asked).';
COMMENT ON FUNCTION pw.create_selection_indexes(text) IS
    'Creates the indexes of pw.selection_index_ddl() for a profile; returns the statements run.';

-- Functions: mail logs
COMMENT ON FUNCTION pw.read_maillog(text, bigint) IS
    'The delivery-status and expiry lines of a Postfix log inside pw_deliverability.maillog_directory, from an offset on.';
COMMENT ON FUNCTION pw.maillog_last_read() IS
    'What the last pw.read_maillog() of this session read: the next offset and the lines seen, returned, ignored and skipped.';
COMMENT ON FUNCTION pw.ingest_maillog(text) IS
    'Ingests a mail log from where the last call stopped (following rotation): outcomes, hard bounces written back and suppressed, the offset advanced.';
COMMENT ON FUNCTION pw.confirm_deliveries(interval) IS
    'Marks send_confirmed the carriers delivered longer ago than older_than and never bounced; returns how many.';
COMMENT ON FUNCTION pw.create_writeback_index() IS
    'Creates the index on the carriers'' normalised email that the bounce writeback joins on, if missing; returns its name.';
COMMENT ON FUNCTION pw.suppress(text, text) IS
    'Adds an address to the suppression list; true when it was not suppressed yet.';

-- Functions: operations
COMMENT ON FUNCTION pw.maillog_profile(text, text) IS
    'The profile pw.maillogs maps a log to ('''' if none); called by the ingest.';
COMMENT ON FUNCTION pw.brake_status(text, boolean) IS
    'The reputation brake of a profile: per operator, outcomes and rates over the window and whether it is paused or slowed.';
COMMENT ON FUNCTION pw.report(text, integer) IS
    'The state of a profile in one report: pool, tagging backlog, sends against caps and outcomes with the brake (the top operators and one line for the others), verification progress.';
COMMENT ON FUNCTION pw.require_pg_cron() IS
    'Fails unless pg_cron is installed in this database.';
COMMENT ON FUNCTION pw.schedule_jobs(text, text, text, integer) IS
    'Registers the daily loop with pg_cron for the calling role (tagging, ingest of each log, confirmation); idempotent.';
COMMENT ON FUNCTION pw.unschedule_jobs() IS
    'Removes the pg_cron jobs pw.schedule_jobs() registered for the calling role; returns how many.';

-- VERP return paths and opt-out tokens
COMMENT ON TABLE pw.token_key IS
    'The key opt-out tokens are signed with (one row, random at CREATE EXTENSION, readable only by the owner, dumped with the configuration).';
COMMENT ON FUNCTION pw.token_key_replace() IS
    'Trigger of pw.token_key: an inserted key replaces the one there.';
COMMENT ON FUNCTION pw.verp_address(text, text, text) IS
    'The VERP envelope sender prefix+user=domain@origin_domain that names a recipient (delimiters pw_deliverability.verp_delimiters).';
COMMENT ON FUNCTION pw.verp_recipient(text, text) IS
    'The recipient a VERP address names, NULL if it names none.';
COMMENT ON FUNCTION pw.optout_token(bigint, text) IS
    'The opt-out token of one sent message (its id and address); not executable by PUBLIC.';
COMMENT ON FUNCTION pw.optout_token_message(text) IS
    'The message id an opt-out token names, NULL if it is not a well-formed token (the signature is not checked).';
COMMENT ON FUNCTION pw.optout_token_valid(text, bigint, text) IS
    'Whether an opt-out token was made for this message id and address with this database''s key.';

-- verdicts
COMMENT ON TABLE pw.bounce_categories IS
    'The categories of bounces and deferrals: only an address_fault category marks a carrier hard_bounced and suppresses the address; block categories pause the operator, throttle categories slow it.';
COMMENT ON TABLE pw.bounce_rules IS
    'Ordered rules naming the category of a bounce or deferral by its enhanced status, SMTP code, reply text and stage; the first match wins, user rows before shipped ones.';
COMMENT ON FUNCTION pw.bounce_rules_check() IS
    'Trigger of pw.bounce_rules: refuses a pattern that does not compile.';
COMMENT ON FUNCTION pw.bounce_rules_changed() IS
    'Trigger of pw.bounce_rules and pw.bounce_categories: every session compiles the rules again at their next use.';
COMMENT ON FUNCTION pw.classify_bounce(text, text) IS
    'The category (pw.bounce_categories) of a bounce or deferral, by its enhanced status and reply text.';
COMMENT ON FUNCTION pw.bounce_reply_parts(text) IS
    'The parts of a reply that the bounce rules match: SMTP code, enhanced status, stage, remote reply text.';
COMMENT ON TABLE pw.maillog_categories IS
    'Bounces and deferrals per day, operator, profile and category.';
COMMENT ON TABLE pw.hard_bounces IS
    'Every carrier the ingest marked hard_bounced, with its prior result and the bounce: what pw.reclassify_outcomes() restores.';
COMMENT ON TABLE pw.verify_attempts IS
    'Verification sends per profile and address: attempts, the latest outcome and its category, the last requeue.';
COMMENT ON VIEW pw.verification_retries IS
    'Each verification''s attempts against the profile''s verify_max_attempts and when it may be sent again.';
COMMENT ON FUNCTION pw.requeue_verifications(text) IS
    'Makes the verifications without a verdict selectable again after verify_retry_after, while attempts are left; returns the carriers requeued.';
COMMENT ON FUNCTION pw.reclassify_outcomes(boolean) IS
    'Applies the current bounce rules to the recorded outcomes: releases addresses suppressed for what is no longer the address''s fault (restoring their carriers'' results), and hard-bounces failures that now are; dry run by default.';

-- run history
COMMENT ON TABLE pw.runs IS
    'Every claim, tagging run, ingest and confirmation: kind, profile, caller, start, end and counts, or the error of one that failed; written by the jobs as the extension''s owner, pruned after pw_deliverability.run_retention days.';
COMMENT ON SEQUENCE pw.runs_run_id_seq IS
    'The run ids of pw.runs.';
COMMENT ON TABLE pw.run_carriers IS
    'The carriers each claim run marked sent: what pw.release_run() gives back.';
COMMENT ON VIEW pw.run_history IS
    'The runs of pw.runs, newest first, with their duration in seconds.';
COMMENT ON VIEW pw.last_runs IS
    'The latest run of each kind and profile, with its age.';
COMMENT ON FUNCTION pw.release_run(bigint) IS
    'Gives back the carriers of a claim run that were never sent (no delivery logged since the claim): their sent column is cleared; returns how many.';

-- health
COMMENT ON FUNCTION pw.library_preloaded() IS
    'Whether shared_preload_libraries loaded the library (the background tagger and progress views need it).';
COMMENT ON FUNCTION pw.maillog_directory_problem() IS
    'What is wrong with pw_deliverability.maillog_directory (not set, missing, unreadable), NULL when the server can read it.';
COMMENT ON FUNCTION pw.carrier_objects() IS
    'The indexes and statistics the extension created outside schema pw (on the carriers table): what DROP EXTENSION removes first.';
COMMENT ON FUNCTION pw.drop_carrier_objects() IS
    'Drops the indexes and statistics of pw.carrier_objects(); returns how many.';
COMMENT ON FUNCTION pw.health() IS
    'One row per check of the installation and the daily loop (library, tagger, DNS, mail-log directory, contract, profiles and their indexes, schedules, backlog, ingests): ok, warning or failing, with a hint.';

-- roles
COMMENT ON FUNCTION pw.grant_role(name, text) IS
    'Grants a role what one part of the daily loop needs (campaign, verify_sender, ingest, monitor); returns the statements run.';

-- ingest progress
COMMENT ON FUNCTION pw.ingest_progress_rows() IS
    'The ingests under way in the cluster (behind pw.ingest_progress).';
COMMENT ON VIEW pw.ingest_progress IS
    'One row per ingest under way: the file being read, the phase, offset, events and addresses so far, the apply phase''s steps done.';

-- tagging in committed batches
COMMENT ON PROCEDURE pw.mx_tag_batches(integer) IS
    'Tags up to max_domains domains in batches of tag_batch_size, committing after each: a cancelled run keeps what it committed.';
