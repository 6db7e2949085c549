# MX tagging against a scripted DNS server on 127.0.0.1: every outcome,
# pw.resolve_mx(), pw.mx_tag(), the domain cache, backoff, relabelling,
# propagation to new carriers, and memory across repeated batches.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PwTest;
use PwDns;

my $dns = PwDns->start();
my $servers = $dns->servers;
my $node = pw_node('mx', conf => "pw_deliverability.worker_enabled = off\n"
	  . "pw_deliverability.dns_servers = '$servers'\n"
	  . "pw_deliverability.dns_timeout_ms = 200\n"
	  . "pw_deliverability.dns_tries = 2\n");
$node->safe_psql('postgres', 'CREATE EXTENSION pw_deliverability');

# without pw_deliverability.database no tagger runs, whatever is preloaded
is($node->safe_psql('postgres', q{SELECT pw.wake_tagger(), pw.tagger_pid() IS NULL,
    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pw_deliverability mx tagger')}),
	'f|t|0', 'no database configured: no background tagger');

# resolve_mx: preference order, null MX, nothing, errors
is($node->safe_psql('postgres', "SELECT string_agg(preference || ' ' || exchange, ',') FROM pw.resolve_mx('Multi.Example.')"),
	'10 contoso-com.mail.protection.outlook.com,20 mx2.emailsrvr.com,30 aspmx.l.google.com',
	'resolve_mx: lowest preference first');
is($node->safe_psql('postgres', "SELECT string_agg(preference || ' ' || exchange, ',') FROM pw.resolve_mx('nullmx.example')"),
	'0 .', 'resolve_mx: null MX');
is($node->safe_psql('postgres', "SELECT count(*) FROM pw.resolve_mx('nx.example')"), '0', 'resolve_mx: NXDOMAIN gives no rows');
my ($ret, $out, $err) = $node->psql('postgres', "SELECT * FROM pw.resolve_mx('servfail.example')");
like($err, qr/MX lookup of "servfail.example" failed: SERVFAIL/, 'resolve_mx: SERVFAIL is an error');
($ret, $out, $err) = $node->psql('postgres', "SELECT * FROM pw.resolve_mx('silent.example')");
like($err, qr/failed: timeout/, 'resolve_mx: a server that never answers times out');
($ret, $out, $err) = $node->psql('postgres', "SELECT * FROM pw.resolve_mx('not a domain')");
like($err, qr/invalid domain name "not a domain"/, 'resolve_mx: invalid names are refused');
is($node->safe_psql('postgres', "SELECT count(*) FROM pw.resolve_mx('big.example')"), '30',
	'resolve_mx: truncated answer retried over TCP');
ok($dns->count('big.example', 'MX', 'tcp') >= 1, 'the TCP retry reached the server');
# a session may point at another server (here: one that is not there)
my $dead = PostgreSQL::Test::Cluster::get_free_port();
($ret, $out, $err) = $node->psql('postgres', "SET pw_deliverability.dns_servers = '127.0.0.1:$dead';
    SET pw_deliverability.dns_timeout_ms = 50; SELECT * FROM pw.resolve_mx('google.example')");
like($err, qr/failed: (timeout|connection refused)/, 'dns_servers can be SET per session');

# carriers in a table with non-default names, to prove the contract is used
$node->safe_psql('postgres', q{
    CREATE SCHEMA crm;
    CREATE TABLE crm."Carriers" (cid bigint PRIMARY KEY, "E-mail" text, res text, "MX" text);
    UPDATE pw.carriers_config SET relation = 'crm."Carriers"', id_column = 'cid',
        email_column = 'E-mail', result_column = 'res', mx_column = 'MX';
    INSERT INTO crm."Carriers" (cid, "E-mail", res) VALUES
        (1, 'a@google.example', 'smtp_valid'),
        (2, 'b@Multi.Example', 'smtp_valid'),
        (3, 'c@yahoo.example', 'smtp_valid'),
        (4, 'd@shared.example', 'smtp_valid'),
        (5, 'e@SHARED.example', 'smtp_valid'),
        (6, 'f@shared.example.', 'smtp_valid'),
        (7, 'g@aonly.example', 'smtp_valid'),
        (8, 'h@aaaaonly.example', 'smtp_valid'),
        (9, 'i@nx.example', 'smtp_valid'),
        (10, 'j@nullmx.example', 'smtp_valid'),
        (11, 'k@nodata.example', 'smtp_valid'),
        (12, 'l@servfail.example', 'smtp_valid'),
        (13, 'm@refused.example', 'smtp_valid'),
        (14, 'n@silent.example', 'smtp_valid'),
        (15, 'o@big.example', 'smtp_valid'),
        (16, 'p@cname.example', 'smtp_valid'),
        (17, 'q@flaky.example', 'smtp_valid'),
        (18, 'r@moving.example', 'smtp_valid'),
        (19, 's@bad_domain.example', 'smtp_valid'),
        (20, 'no-at-sign', 'smtp_valid'),
        (21, 't@bücher.example', 'smtp_valid'),
        (22, 'u@tagged.example', 'smtp_valid');
    UPDATE crm."Carriers" SET "MX" = 'mx:already.net' WHERE cid = 22;
});
is($node->safe_psql('postgres', 'SELECT pw.create_tagging_index()'), 'Carriers_pw_untagged_domain',
	'create_tagging_index names its index');

my $row = $node->safe_psql('postgres', 'SELECT looked_up, tagged, "none", invalid, failed, carriers_updated FROM pw.mx_tag()');
is($row, '17|10|3|2|4|17', 'mx_tag counts: looked up, tagged, none, invalid, failed, carriers');

my %want = (
	'google.example'   => 'mx|google|0|',
	'multi.example'    => 'mx|microsoft|0|',
	'yahoo.example'    => 'mx|mx:yahoodns.net|0|',
	'shared.example'   => 'mx|cisco|0|',
	'aonly.example'    => 'address|mx:aonly.example|0|',
	'aaaaonly.example' => 'address|mx:aaaaonly.example|0|',
	'nx.example'       => 'nxdomain|none|0|',
	'nullmx.example'   => 'null_mx|none|0|',
	'nodata.example'   => 'no_records|none|0|',
	'servfail.example' => 'failed||1|SERVFAIL',
	'refused.example'  => 'failed||1|REFUSED',
	'silent.example'   => 'failed||1|timeout',
	'big.example'      => 'mx|mx:bigmail-provider.net|0|',
	'cname.example'    => 'mx|mx:icloud.com|0|',
	'flaky.example'    => 'failed||1|SERVFAIL',
	'moving.example'   => 'mx|google|0|',
	'bad_domain.example' => 'invalid|none|0|character not allowed in a host name',
	'no-at-sign'       => 'invalid|none|0|single-label name',
	'bücher.example'   => 'mx|zoho|0|',);
my %got = map { my ($d, @r) = split /\|/, $_, -1; ($d => join('|', @r)) } split /\n/,
  $node->safe_psql('postgres', 'SELECT domain, outcome, label, attempts, last_error FROM pw.mx_domains');
is_deeply(\%got, \%want, 'every outcome recorded in pw.mx_domains');

is($node->safe_psql('postgres', q{SELECT string_agg(cid || '=' || coalesce("MX", 'NULL'), ' ' ORDER BY cid) FROM crm."Carriers"}),
	'1=google 2=microsoft 3=mx:yahoodns.net 4=cisco 5=cisco 6=cisco 7=mx:aonly.example 8=mx:aaaaonly.example '
	  . '9=none 10=none 11=none 12=NULL 13=NULL 14=NULL 15=mx:bigmail-provider.net 16=mx:icloud.com 17=NULL '
	  . '18=google 19=none 20=none 21=zoho 22=mx:already.net',
	'labels reached the carriers; failures stay NULL; tagged carriers untouched');
is($dns->count('shared.example', 'MX'), 1, 'a domain shared by three carriers is looked up once');
is($dns->count('bad_domain.example'), 0, 'an invalid domain is never sent to DNS');
is($dns->count('nullmx.example', 'A'), 0, 'a null MX ends the lookup');
is($dns->count('aonly.example', 'A'), 1, 'NODATA for MX asks for A');
is($dns->count('aaaaonly.example', 'AAAA'), 1, 'no A asks for AAAA');
is($node->safe_psql('postgres', q{SELECT mx_hosts FROM pw.mx_domains WHERE domain = 'multi.example'}),
	'{contoso-com.mail.protection.outlook.com,mx2.emailsrvr.com,aspmx.l.google.com}', 'MX hosts kept in preference order');
is($node->safe_psql('postgres', q{SELECT round(extract(epoch FROM next_check_at - checked_at)) FROM pw.mx_domains WHERE domain = 'servfail.example'}),
	'300', 'a failure is retried after retry_after');

# nothing is due now: a second run looks nothing up
$row = $node->safe_psql('postgres', 'SELECT looked_up, carriers_updated FROM pw.mx_tag()');
is($row, '0|0', 'a second run has nothing to do');

# failures back off exponentially; a healed domain gets its label
$dns->heal;
$node->safe_psql('postgres', q{UPDATE pw.mx_domains SET next_check_at = now() - interval '1 s' WHERE outcome = 'failed'});
$row = $node->safe_psql('postgres', 'SELECT looked_up, tagged, failed FROM pw.mx_tag()');
is($row, '4|1|3', 'due failures are retried');
is($node->safe_psql('postgres', q{SELECT attempts, round(extract(epoch FROM next_check_at - checked_at)), last_error
    FROM pw.mx_domains WHERE domain = 'refused.example'}), '2|600|REFUSED', 'second failure: attempts 2, backoff doubled');
is($node->safe_psql('postgres', q{SELECT outcome, label, attempts, last_error IS NULL FROM pw.mx_domains WHERE domain = 'flaky.example'}),
	'mx|godaddy|0|t', 'a recovered domain is labelled and its attempts reset');
is($node->safe_psql('postgres', q{SELECT "MX" FROM crm."Carriers" WHERE cid = 17}), 'godaddy', 'and its carrier tagged');
$node->safe_psql('postgres', q{UPDATE pw.mx_domains SET next_check_at = now() - interval '1 s' WHERE outcome = 'failed'});
$node->safe_psql('postgres', 'SET pw_deliverability.retry_after = 1000; SET pw_deliverability.recheck_after = 1500; SELECT pw.mx_tag()');
is($node->safe_psql('postgres', q{SELECT attempts, round(extract(epoch FROM next_check_at - checked_at)) FROM pw.mx_domains WHERE domain = 'refused.example'}),
	'3|1500', 'backoff is capped at recheck_after');

# a stale domain is looked up again; a changed label moves its carriers
$node->safe_psql('postgres', q{UPDATE pw.mx_domains SET next_check_at = now() - interval '1 s' WHERE domain = 'moving.example'});
$row = $node->safe_psql('postgres', 'SELECT looked_up, tagged FROM pw.mx_tag()');
is($row, '1|1', 'a stale domain is rechecked');
is($node->safe_psql('postgres', q{SELECT "MX" FROM crm."Carriers" WHERE cid = 18}), 'rackspace', 'a relabelled domain moves its carriers');

# new carriers: known domains need no DNS, new ones are looked up
my $before = $dns->count('google.example', 'MX');
$node->safe_psql('postgres', q{INSERT INTO crm."Carriers" (cid, "E-mail") VALUES (30, 'new@google.example'), (31, 'x@newcomer.example')});
$row = $node->safe_psql('postgres', 'SELECT looked_up, "none", carriers_updated FROM pw.mx_tag()');
is($row, '1|1|2', 'new carriers are tagged without listing them');
is($dns->count('google.example', 'MX'), $before, 'a cached domain is not looked up again');

# the caller's transaction decides
$node->safe_psql('postgres', q{INSERT INTO crm."Carriers" (cid, "E-mail") VALUES (32, 'y@nx2.example')});
$node->safe_psql('postgres', 'BEGIN; SELECT pw.mx_tag(); ROLLBACK');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pw.mx_domains WHERE domain = 'nx2.example'}), '0',
	'a rolled-back mx_tag leaves no trace');
is($node->safe_psql('postgres', 'SELECT looked_up FROM pw.mx_tag(0)'), '0', 'max_domains 0 looks nothing up');
is($node->safe_psql('postgres', 'SELECT looked_up FROM pw.mx_tag(1)'), '1', 'max_domains bounds the lookups');

# the backlog views
is($node->safe_psql('postgres', 'SELECT untagged_carriers, failing_domains, invalid_domains FROM pw.mx_backlog'),
	'3|3|2', 'mx_backlog');
is($node->safe_psql('postgres', q{SELECT carriers FROM pw.mx_labels WHERE label = 'cisco'}), '3', 'mx_labels');
is($node->safe_psql('postgres', q{SELECT string_agg(domain, ',') FROM pw.mx_failing}),
	'refused.example,servfail.example,silent.example', 'mx_failing');

# cancel in the middle of a batch of never-answered lookups
$node->safe_psql('postgres', q{INSERT INTO crm."Carriers" (cid, "E-mail") VALUES (40, 'z@silent.example')});
($ret, $out, $err) = $node->psql('postgres', q{SET statement_timeout = '300ms'; SET pw_deliverability.dns_timeout_ms = 5000;
    UPDATE pw.mx_domains SET next_check_at = now() WHERE domain = 'silent.example'; SELECT pw.mx_tag()});
like($err, qr/canceling statement due to statement timeout/, 'a batch waiting on DNS can be cancelled');

# many domains in small batches: all tagged, memory flat across batches
my %bulk = map { ("bulk$_.example" => ($_ % 3 ? "mx$_.bulkhost.net" : 'aspmx.l.google.com')) } 1 .. 1500;
my $dns2 = PwDns->start(records => {}, bulk => \%bulk);
my $s2 = $dns2->servers;
$node->safe_psql('postgres', q{INSERT INTO crm."Carriers" (cid, "E-mail") SELECT 1000 + i, 'x' || i || '@bulk' || i || '.example' FROM generate_series(1, 1500) i});
my $mem = $node->safe_psql('postgres', qq{
    SET pw_deliverability.dns_servers = '$s2';
    SET pw_deliverability.tag_batch_size = 100;
    SET pw_deliverability.dns_concurrency = 50;
    CREATE TEMP TABLE m (run int, bytes bigint, looked_up bigint);
    SELECT pw.mx_tag(300);
    INSERT INTO m SELECT 1, sum(total_bytes), 0 FROM pg_backend_memory_contexts;
    INSERT INTO m SELECT 2, (SELECT sum(total_bytes) FROM pg_backend_memory_contexts), looked_up FROM pw.mx_tag(300);
    INSERT INTO m SELECT 3, (SELECT sum(total_bytes) FROM pg_backend_memory_contexts), looked_up FROM pw.mx_tag(300);
    INSERT INTO m SELECT 4, (SELECT sum(total_bytes) FROM pg_backend_memory_contexts), looked_up FROM pw.mx_tag(300);
    INSERT INTO m SELECT 5, (SELECT sum(total_bytes) FROM pg_backend_memory_contexts), looked_up FROM pw.mx_tag(300);
    SELECT max(bytes) - min(bytes) FILTER (WHERE run >= 2), sum(looked_up) FROM m;
});
my ($growth, $n) = split /\|/, $mem;
is($n, '1200', 'four runs of 300 in batches of 100');
ok($growth < 256 * 1024, "no memory growth across batches ($growth bytes)");
is($node->safe_psql('postgres', q{SELECT count(*) FROM crm."Carriers" c WHERE cid > 1000 AND "MX" IS DISTINCT FROM
    CASE WHEN (cid - 1000) % 3 = 0 THEN 'google' ELSE 'mx:bulkhost.net' END}), '0',
	'all 1500 bulk carriers tagged with the right labels');
is($dns2->count('bulk7.example', 'MX'), 1, 'each bulk domain looked up once');
is(scalar(grep { $_->[1] eq 'MX' } $dns2->queries), 1500, '1500 MX queries for 1500 domains');

# --- the run history: every run recorded, a failed one with its error ----
my $runs = $node->safe_psql('postgres', q{SELECT count(*) FROM pw.runs WHERE kind = 'mx_tag' AND error IS NULL
    AND (counts ->> 'looked_up')::int = 300});
is($runs, '5', 'each tagging run of 300 is in pw.runs with its counts');
my $errors_sql = q{SELECT count(*) FROM pw.runs WHERE error IS NOT NULL};
my $errors = $node->safe_psql('postgres', $errors_sql);
# a second tagging run waits for the first one's lock, says whom it waits
# for, and is cancelled by its statement_timeout
my $holder = $node->background_psql('postgres', on_error_stop => 1);
my $holder_pid = $holder->query_safe('SELECT pg_backend_pid()');
$holder->query_safe(q{SET client_min_messages = warning; BEGIN; SELECT looked_up FROM pw.mx_tag(0)});
($ret, $out, $err) = $node->psql('postgres', q{SET statement_timeout = '1s'; SELECT * FROM pw.mx_tag(10)});
like($err, qr/NOTICE:  waiting for the tagging lock \(one tagging run at a time\), held by PID $holder_pid\b/,
	'a waiting tagging run says whom it waits for');
like($err, qr/canceling statement due to statement timeout/, '... and is cancelled by its timeout');
$holder->query_safe('COMMIT');
$holder->quit;
is($node->safe_psql('postgres', $errors_sql), $errors,
	'a failed run is not written in its own, rolled back, transaction');
$node->safe_psql('postgres', 'SELECT pw.mx_tag(0)');
is($node->safe_psql('postgres', $errors_sql), $errors + 1, 'the next run writes it into pw.runs');
is($node->safe_psql('postgres', q{SELECT kind || ' ' || (finished >= started) || ' ' || caller || ' ' || error
    FROM pw.runs WHERE error IS NOT NULL ORDER BY run_id DESC LIMIT 1}),
	'mx_tag true postgres (010_mx_tag.pl) 57014: canceling statement due to statement timeout',
	'... with its caller and error');
($ret, $out, $err) = $node->psql('postgres',
	q{SELECT pw.release_run(max(run_id)) FROM pw.runs WHERE error IS NOT NULL});
like($err, qr/is a mx_tag run, not a claim/, 'release_run refuses it');

# --- pw.mx_tag_batches(): committed batch by batch, a cancel keeps them ---
my %slow = map { ("slow$_.example" => "mx$_.slowhost.net") } 1 .. 300;
my $dns3 = PwDns->start(records => {}, bulk => \%slow);
my $s3 = $dns3->servers;
$node->safe_psql('postgres', q{INSERT INTO crm."Carriers" (cid, "E-mail") SELECT 5000 + i, 's' || i || '@slow' || i || '.example' FROM generate_series(1, 300) i});
my $batches_before = $node->safe_psql('postgres', q{SELECT count(*) FROM pw.runs WHERE kind = 'mx_tag' AND error IS NULL});
($ret, $out, $err) = $node->psql('postgres', qq{
    SET pw_deliverability.dns_servers = '$s3';
    SET pw_deliverability.tag_batch_size = 50;
    SET pw_deliverability.dns_max_qps = 100;
    SET pw_deliverability.dns_process = off;
    SET statement_timeout = '1800ms';
    CALL pw.mx_tag_batches(300)});
like($err, qr/canceling statement due to statement timeout/, 'a slow pw.mx_tag_batches() is cancelled part-way');
my $kept = $node->safe_psql('postgres', q{SELECT count(*) FROM pw.mx_domains WHERE domain LIKE 'slow%'});
ok($kept >= 50 && $kept < 300 && $kept % 50 == 0, "... and keeps the batches it committed ($kept domains)");
is($node->safe_psql('postgres', q{SELECT count(*) FROM pw.runs WHERE kind = 'mx_tag' AND error IS NULL})
	- $batches_before, $kept / 50, '... each a run of pw.runs');
$node->safe_psql('postgres', qq{SET pw_deliverability.dns_servers = '$s3'; CALL pw.mx_tag_batches(1000)});
is($node->safe_psql('postgres', q{SELECT count(*) FROM crm."Carriers" WHERE cid > 5000 AND "MX" = 'mx:slowhost.net'}),
	'300', 'a second call tags the rest');
($ret, $out, $err) = $node->psql('postgres', q{BEGIN; CALL pw.mx_tag_batches(10)});
like($err, qr/invalid transaction termination/, 'inside a transaction block it cannot commit, and says so');
$dns3->stop;

$node->stop;
$dns->stop;
$dns2->stop;
done_testing();
