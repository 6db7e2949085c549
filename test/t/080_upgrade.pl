# Upgrades and dump/restore: CREATE EXTENSION ... VERSION '0.1' with data,
# ALTER EXTENSION UPDATE to 0.2 keeps the data and gives the 0.2 behaviour and
# the catalog of a fresh 0.2; the update to the current version gives the
# catalog of a fresh install, from 0.1 and from a fresh 0.2 (whose rows are
# then those of a fresh install too); pg_dump -Fc / pg_restore round-trips
# the configuration tables, including user edits of shipped defaults.
use strict;
use warnings;
use Cwd qw(realpath);
use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PwTest;

my $base = PostgreSQL::Test::Utils::tempdir();
my $logs = "$base/logs";
make_path($logs);
$logs = realpath($logs);
my $node = pw_node('upgrade', conf => "pw_deliverability.maillog_directory = '$logs'\n");

sub line
{
	my ($qid, $to, $dsn, $status) = @_;
	return "2024-03-01T10:00:00+00:00 mx1 postfix/smtp[42]: $qid: to=<$to>, "
	  . "relay=mx.example[192.0.2.1]:25, delay=0.1, delays=0/0/0/0.1, dsn=$dsn, status=$status (r)\n";
}

sub append
{
	my ($path, $text) = @_;
	open(my $fh, '>>', $path) or die "$path: $!";
	print $fh $text;
	close($fh);
}

# The configuration a user cares about, one line a row (seeded flag left out:
# 0.1 has none).
my $config_sql = q{
SELECT string_agg(x, E'\n' ORDER BY x) FROM (
          SELECT 'p ' || concat_ws('|', name, warmup_start, exclude_until_day, per_op_run_cap,
                                   sent_column, sendable_results, purpose, note) FROM pw.profiles
UNION ALL SELECT 'w ' || concat_ws('|', profile, op_class, from_day, daily_cap) FROM pw.warmup_ramp
UNION ALL SELECT 'r ' || concat_ws('|', profile, operator, from_day, daily_cap) FROM pw.operator_ramp
UNION ALL SELECT 'o ' || concat_ws('|', label, op_class, note) FROM pw.operators
UNION ALL SELECT 'x ' || concat_ws('|', suffix, label, note) FROM pw.mx_suffix_rules
UNION ALL SELECT 'b ' || concat_ws('|', domain, category, note) FROM pw.blocked_domains
UNION ALL SELECT 'v ' || concat_ws('|', result, dead, verifiable, description) FROM pw.verify_results
UNION ALL SELECT 'k ' || concat_ws('|', name, description) FROM pw.operator_classes
UNION ALL SELECT 'c ' || concat_ws('|', relation, id_column, email_column) FROM pw.carriers_config
UNION ALL SELECT 's ' || concat_ws('|', email, reason, source) FROM pw.suppressions
UNION ALL SELECT 'd ' || concat_ws('|', email, sent_count, bounce_count) FROM pw.deliveries
UNION ALL SELECT 'm ' || concat_ws('|', path, "offset", lines) FROM pw.maillog_files
UNION ALL SELECT 'f ' || md5(string_agg(concat_ws('|', id, email, email_verify_result, mx_provider,
                                                  listmonk_sent_at), ',' ORDER BY id)) FROM public.fmcsa_carriers) s(x)};

# The extension's catalog, one line an object, to compare installs reached by
# different paths.
my $catalog_sql = q{
SELECT x FROM (
SELECT 'fn ' || p.oid::regprocedure::text || ' ' || coalesce(p.proacl::text, '-')
       || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '-') || E'\n'
       || pg_get_functiondef(p.oid)
  FROM pg_proc p WHERE p.pronamespace = 'pw'::regnamespace AND p.prokind <> 'a'
UNION ALL
SELECT format('col %s.%s #%s %s notnull=%s default=%s', c.relname, a.attname, a.attnum,
              format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
 WHERE c.relnamespace = 'pw'::regnamespace
UNION ALL
SELECT format('rel %s %s %s comment=%s', c.relname, c.relkind, coalesce(c.relacl::text, '-'),
              coalesce(obj_description(c.oid, 'pg_class'), '-'))
  FROM pg_class c WHERE c.relnamespace = 'pw'::regnamespace
UNION ALL
SELECT format('con %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
  FROM pg_constraint WHERE connamespace = 'pw'::regnamespace
UNION ALL
SELECT 'idx ' || pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'pw'::regnamespace
UNION ALL
SELECT 'trg ' || pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'pw'::regnamespace AND NOT t.tgisinternal
UNION ALL
SELECT format('view %s %s', c.relname, pg_get_viewdef(c.oid))
  FROM pg_class c WHERE c.relnamespace = 'pw'::regnamespace AND c.relkind = 'v'
UNION ALL
SELECT format('type %s %s', t.typname, t.typtype)
  FROM pg_type t WHERE t.typnamespace = 'pw'::regnamespace
UNION ALL
SELECT format('member %s', pg_describe_object(d.classid, d.objid, d.objsubid))
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
 WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'pw_deliverability' AND d.deptype = 'e'
UNION ALL
SELECT format('dump %s %s', c.relname, e.extcondition[i])
  FROM pg_extension e, generate_subscripts(e.extconfig, 1) i
  JOIN pg_class c ON true
 WHERE e.extname = 'pw_deliverability' AND c.oid = e.extconfig[i]
) s(x) ORDER BY x};

# The catalog of database $db equals the catalog of database $ref.
sub same_catalog
{
	my ($db, $ref, $name) = @_;
	my @got = split /\n/, $node->safe_psql($db, $catalog_sql);
	my @want = split /\n/, $node->safe_psql($ref, $catalog_sql);
	ok(@want > 300, "catalog listing of $ref is substantial (" . scalar(@want) . ' lines)');
	is_deeply(\@got, \@want, $name);
}

# --- 0.1 with data ------------------------------------------------------------
$node->safe_psql('postgres', 'CREATE DATABASE up');
$node->safe_psql('up', q{CREATE EXTENSION pw_deliverability VERSION '0.1'});
is($node->safe_psql('up', q{SELECT extversion FROM pg_extension WHERE extname = 'pw_deliverability'}),
	'0.1', 'installed as 0.1');
pw_load_generator($node, 'up');
$node->safe_psql('up', q{
    SELECT pw_generate_carriers(3000, seed => 5);
    UPDATE pw.profiles SET warmup_start = '2024-01-01', per_op_run_cap = 70 WHERE name = 'default';
    INSERT INTO pw.profiles (name, warmup_start, note) VALUES ('mine', '2024-02-01', 'a user profile');
    INSERT INTO pw.warmup_ramp VALUES ('mine', 'default', 1, 33);
    UPDATE pw.warmup_ramp SET daily_cap = 41 WHERE profile = 'default' AND op_class = 'default' AND from_day = 1;
    INSERT INTO pw.operators (label, op_class, note) VALUES ('acme', 'big', 'user operator');
    INSERT INTO pw.operator_ramp VALUES ('default', 'acme', 1, 3);
    INSERT INTO pw.blocked_domains (domain, category) VALUES ('blocked.example', 'other');
    SELECT pw.suppress('Opted.Out@Example.com', 'opt-out');
    -- an untouched verify profile of a 0.1 installed on an earlier day
    UPDATE pw.profiles SET warmup_start = current_date - 10 WHERE name = 'verify';
});

# The state a 0.1 ingest left: the first line of mail.log applied (the 0.2
# library cannot ingest under the 0.1 schema, which lacks maillog_files.tail).
my $log = "$logs/mail.log";
my $first = line('AAAAA00001', 'first@a.example', '2.0.0', 'sent');
append($log, $first);
my @st = stat($log);
$node->safe_psql('up', qq{
    INSERT INTO pw.maillog_files (path, dev, inode, "offset", lines, events)
    VALUES ('$log', $st[0], $st[1], ${\ length($first)}, 1, 1);
    INSERT INTO pw.deliveries (email, first_sent_at, last_sent_at, sent_count)
    VALUES ('first\@a.example', '2024-03-01 10:00+00', '2024-03-01 10:00+00', 1);
});
my $before = $node->safe_psql('up', $config_sql);

# --- the 0.1 seeds collided with their own dump on restore ----------------
my $dump01 = "$base/up01.dump";
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump01, '-d', $node->connstr('up') ], 'pg_dump of a 0.1 database');
$node->safe_psql('postgres', 'CREATE DATABASE old01');
$node->safe_psql('old01', q{CREATE EXTENSION pw_deliverability VERSION '0.1'});
my ($out, $err) = run_command([ 'pg_restore', '-d', $node->connstr('old01'), $dump01 ]);
like($err, qr/duplicate key value violates unique constraint "profiles_pkey"/,
	'0.1: restoring a dump collides with the seeded defaults');

# A 0.1 dump restores cleanly into 0.2: the dumped rows replace the seeds.
$node->safe_psql('postgres', 'CREATE DATABASE new01');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('new01'), $dump01 ],
	'a 0.1 dump restores into 0.2');
is($node->safe_psql('new01', $config_sql), $before, '... with every configuration row');

# --- ALTER EXTENSION UPDATE -----------------------------------------------------
$node->safe_psql('up', q{ALTER EXTENSION pw_deliverability UPDATE TO '0.2'});
is($node->safe_psql('up', q{SELECT extversion FROM pg_extension WHERE extname = 'pw_deliverability'}),
	'0.2', 'updated to 0.2');
is($node->safe_psql('up', $config_sql), $before, 'the update keeps every row');

# The frozen 0.1--0.2 script gives the catalog of the frozen 0.2 script.
$node->safe_psql('postgres', 'CREATE DATABASE fresh02');
$node->safe_psql('fresh02', q{CREATE EXTENSION pw_deliverability VERSION '0.2'});
same_catalog('up', 'fresh02', 'an install updated from 0.1 to 0.2 has the catalog of a fresh 0.2 install');
is($node->safe_psql('up', q{
    SELECT string_agg(format('%s:%s', x, seeded), ',' ORDER BY x) FROM (
              SELECT 'p.' || name, seeded FROM pw.profiles WHERE name IN ('default', 'mine', 'verify')
    UNION ALL SELECT 'o.' || label, seeded FROM pw.operators WHERE label IN ('acme', 'google')
    UNION ALL SELECT 'w.' || profile || from_day, seeded FROM pw.warmup_ramp
     WHERE op_class = 'default' AND from_day IN (1, 8) AND profile = 'default'
    UNION ALL SELECT 'c', seeded FROM pw.carriers_config) s(x, seeded)}),
	'c:t,o.acme:f,o.google:t,p.default:f,p.mine:f,p.verify:t,w.default1:f,w.default8:t',
	'rows edited or added under 0.1 are the user\'s, untouched defaults stay seeded');

# Behaviour of 0.2 on the updated install (the selection, whose library
# reads pw.brake_status(profile, braked_only) and pw.daily_caps() of the
# current version, is checked after the update to it, below).
is($node->safe_psql('up', q{
    SELECT to_regprocedure('pw.schedule_jobs(text,text,text,integer)') IS NOT NULL,
           to_regprocedure('pw.unschedule_jobs()') IS NOT NULL,
           to_regprocedure('pw.report(text)') IS NOT NULL,
           to_regclass('pw.braked_operators') IS NOT NULL}), 't|t|t|t',
	'schedule, report and brake objects exist');
$node->safe_psql('up', 'CREATE ROLE nobody_in_particular');
is($node->safe_psql('up', q{
    SELECT has_function_privilege('nobody_in_particular', 'pw.wake_tagger()', 'EXECUTE'),
           has_function_privilege('nobody_in_particular', 'pw.schedule_jobs(text,text,text,integer)', 'EXECUTE'),
           has_function_privilege('nobody_in_particular', 'pw.ingest_maillog(text)', 'EXECUTE'),
           (SELECT proconfig FROM pg_proc WHERE oid = 'pw.create_tagging_index()'::regprocedure)}),
	'f|f|f|{"search_path=pg_catalog, pg_temp"}', 'privileges and search_path hold after the update');

# --- ALTER EXTENSION UPDATE to the current version ------------------------------
$node->safe_psql('up', q{ALTER EXTENSION pw_deliverability UPDATE});
is($node->safe_psql('up', q{SELECT extversion FROM pg_extension WHERE extname = 'pw_deliverability'}),
	$node->safe_psql('up', q{SELECT default_version FROM pg_available_extensions WHERE name = 'pw_deliverability'}),
	'updated to the default version');

# The ingest continues from the offset stored under 0.1 (the library is
# the current version's: it ingests with the current SQL objects).
append($log, line('AAAAA00002', 'second@a.example', '5.1.1', 'bounced'));
$node->safe_psql('up', q{SELECT * FROM pw.ingest_maillog('mail.log')});
is($node->safe_psql('up', q{
    SELECT string_agg(concat_ws(':', email, sent_count, bounce_count), ',' ORDER BY email) FROM pw.deliveries}),
	'first@a.example:1:0,second@a.example:0:1', 'ingest resumes after the 0.1 offset');
is($node->safe_psql('up', q{SELECT bounce_category FROM pw.deliveries WHERE email = 'second@a.example'}),
	'bad_mailbox', '... and classifies its bounce');
is($node->safe_psql('up', qq{SELECT "offset" = ${\ -s $log} AND tail IS NOT NULL FROM pw.maillog_files}),
	't', 'offset and tail advanced');


# The selection on the updated install.
my $comp = $node->safe_psql('up', q{
    SELECT count(*) > 0, bool_and(brake IS NULL OR brake <> '') FROM pw.selection_composition(200, 'default', 60)});
is($comp, 't|t', 'selection_composition has the brake columns');
ok($node->safe_psql('up', q{SELECT count(*) FROM pw.select_sendable_carriers(200, 'default', 60)}) > 0,
	'selection works');

# --- catalog of an updated install == a fresh install of the current version ----
$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION pw_deliverability');
same_catalog('up', 'fresh', 'an install updated from 0.1 has the catalog of a fresh install');

# A fresh install of the frozen 0.2 script, updated, equals a fresh install.
$node->safe_psql('postgres', 'CREATE DATABASE from02');
$node->safe_psql('from02', q{CREATE EXTENSION pw_deliverability VERSION '0.2'});
$node->safe_psql('from02', q{ALTER EXTENSION pw_deliverability UPDATE});
same_catalog('from02', 'fresh', 'a fresh 0.2 install updated has the catalog of a fresh install');

# Every row of the configuration tables (the seeds), one line a table; the
# opt-out token key is random in each install: its row is counted, not compared.
sub config_rows
{
	my ($db) = @_;
	my @tables = split /\n/, $node->safe_psql($db, q{
	    SELECT c::regclass::text AS t FROM pg_extension e, unnest(e.extconfig) c
	      JOIN pg_class k ON k.oid = c
	     WHERE e.extname = 'pw_deliverability' AND k.relkind <> 'S' ORDER BY t});
	return join "\n", map {
		"$_ " . $node->safe_psql($db, qq{
		    SELECT count(*) || ' ' || coalesce(md5(string_agg((to_jsonb(t) - '{key,created}'::text[])::text, ','
		                                             ORDER BY (to_jsonb(t) - '{key,created}'::text[])::text)), '-')
		      FROM $_ t})
	} @tables;
}
my $fresh_rows = config_rows('fresh');
like($fresh_rows, qr/^pw\.warmup_ramp 26 /m, 'a fresh install seeds the configuration');
is(config_rows('from02'), $fresh_rows, '... the rows of an updated fresh 0.2 install are those of a fresh install');

# --- dump/restore of the current version ----------------------------------------------------------
# A seeded row edited under 0.2 (the verify profile) and a seeded row deleted
# then added back differently.
$node->safe_psql('up', q{
    UPDATE pw.profiles SET warmup_start = '2023-12-01' WHERE name = 'verify';
    UPDATE pw.carriers_config SET result_column = 'email_verify_result';
    INSERT INTO pw.blocked_domains (domain, category, note) VALUES ('aol.com', 'other', 'mine now');
});
is($node->safe_psql('up', q{SELECT category || ':' || seeded FROM pw.blocked_domains WHERE domain = 'aol.com'}),
	'other:false', 'inserting over a seeded row replaces it and makes it the user\'s');
# state the dump keeps: the DNS cache and the run history (a claim with its carriers)
$node->safe_psql('up', q{
    INSERT INTO pw.mx_domains (domain, label, mx_hosts, outcome, resolved_at, next_check_at)
    VALUES ('kept.example', 'google', '{aspmx.l.google.com}', 'mx', now(), now() + interval '30 days'),
           ('gone.example', 'none', NULL, 'nxdomain', now(), now() + interval '30 days');
    SELECT count(*) FROM pw.select_sendable_carriers(5, 'mine', 60, claim => true);
});
my $state_sql = q{SELECT (SELECT string_agg(concat_ws(':', domain, label, outcome, next_check_at), ','
                                            ORDER BY domain) FROM pw.mx_domains),
                         (SELECT string_agg(concat_ws(':', run_id, kind, profile, counts), ',' ORDER BY run_id)
                            FROM pw.runs),
                         (SELECT count(*) FROM pw.run_carriers)};
my $state = $node->safe_psql('up', $state_sql);
like($state, qr/kept\.example:google:mx.*\|.*:claim:mine:.*\|5$/, 'a DNS cache and a claim run to dump');
my $config = $node->safe_psql('up', $config_sql);
my $dump = "$base/up02.dump";
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('up') ], 'pg_dump of the 0.2 database');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
	'pg_restore into a fresh database succeeds');
is($node->safe_psql('restored', $config_sql), $config, 'the restore has every configuration row');
is($node->safe_psql('restored', q{
    SELECT string_agg(concat_ws(':', name, warmup_start, seeded), ',' ORDER BY name) FROM pw.profiles}),
	'default:2024-01-01:f,mine:2024-02-01:f,verify:2023-12-01:f',
	'edits of shipped profiles survive dump/restore');
my $seeded_sql = q{SELECT string_agg(t || seeded, ',' ORDER BY t) FROM (
    SELECT 'o.' || label || ':', seeded FROM pw.operators
    UNION ALL SELECT 'w.' || profile || op_class || from_day || ':', seeded FROM pw.warmup_ramp) s(t, seeded)};
is($node->safe_psql('restored', $seeded_sql), $node->safe_psql('up', $seeded_sql),
	'the seeded flags survive dump/restore');
is($node->safe_psql('restored', q{SELECT count(*) || ':' || md5(string_agg(key::text, '')) FROM pw.token_key}),
	$node->safe_psql('up', q{SELECT count(*) || ':' || md5(string_agg(key::text, '')) FROM pw.token_key}),
	'the opt-out token key survives dump/restore (tokens already sent stay valid)');
is($node->safe_psql('restored', $state_sql), $state,
	'the DNS cache, the run history and the claims\' carriers survive dump/restore');
is($node->safe_psql('restored', q{SELECT count(*) FROM pw.select_sendable_carriers(200, 'mine', 60)}),
	$node->safe_psql('up', q{SELECT count(*) FROM pw.select_sendable_carriers(200, 'mine', 60)}),
	'the restored database selects like the original');

is($node->safe_psql('restored', q{
    SELECT count(*) >= 0 FROM pw.select_sendable_carriers(1, 'mine', 60, claim => true);
    SELECT max(run_id) > (SELECT min(run_id) FROM pw.runs) FROM pw.runs}), "t\nt",
	'... and new runs continue the run ids');

$node->stop;
done_testing();
