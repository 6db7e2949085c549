# Security: what a role without grants cannot do (read files, change the
# configuration, set the superuser settings, wake the tagger, resolve or tag
# MX), what a campaign role needs, fixed search_paths on every function with
# a body bound at call time, schema-qualified names in the install script,
# and a hostile search_path that cannot hijack the extension's functions.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PwTest;
use PwDns;

my $logs = PostgreSQL::Test::Utils::tempdir();
my $dns = PwDns->start();
my $servers = $dns->servers;
my $node = pw_node('security', conf => "pw_deliverability.worker_enabled = off\n"
	  . "pw_deliverability.dns_servers = '$servers'\n"
	  . "pw_deliverability.dns_timeout_ms = 200\n"
	  . "pw_deliverability.dns_tries = 2\n"
	  . "pw_deliverability.maillog_directory = '$logs'\n");
$node->safe_psql('postgres', 'CREATE EXTENSION pw_deliverability');
$node->safe_psql('postgres', q{
    CREATE TABLE public.fmcsa_carriers (id bigint PRIMARY KEY, email text, email_verify_result text,
                                        mx_provider text, listmonk_sent_at timestamptz);
    INSERT INTO public.fmcsa_carriers (id, email, email_verify_result, mx_provider)
    SELECT i, 'dot' || i || '@c' || (i % 7) || '.example', 'smtp_valid',
           CASE WHEN i % 3 = 0 THEN NULL ELSE 'mx:host' || (i % 5) || '.net' END
      FROM generate_series(1, 200) i;
    INSERT INTO public.fmcsa_carriers (id, email, email_verify_result) VALUES
        (1001, 'a@google.example', 'smtp_valid'), (1002, 'b@yahoo.example', 'smtp_valid'),
        (1003, 'c@multi.example', 'catch_all_domain'), (1004, 'D@Shared.Example', 'smtp_valid');
    CREATE ROLE intruder LOGIN;
    CREATE ROLE campaign LOGIN;
    -- schema usage alone: every denial below is the object's own
    GRANT USAGE ON SCHEMA pw TO intruder;
});

# Runs SQL as a login role; returns stderr.
sub as_role
{
	my ($role, $sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql, extra_params => [ '-U', $role ]);
	return ($ret, $out, $err);
}

# The configuration and the carriers, to prove denied statements changed nothing.
my $state_sql = q{SELECT md5(string_agg(t, '|' ORDER BY t)) FROM (
    SELECT 'p' || p::text AS t FROM pw.profiles p
    UNION ALL SELECT 'r' || r::text FROM pw.mx_suffix_rules r
    UNION ALL SELECT 'c' || c::text FROM pw.carriers_config c
    UNION ALL SELECT 'o' || o::text FROM pw.operators o
    UNION ALL SELECT 'w' || w::text FROM pw.warmup_ramp w
    UNION ALL SELECT 'b' || b::text FROM pw.blocked_domains b
    UNION ALL SELECT 's' || s::text FROM pw.suppressions s
    UNION ALL SELECT 'f' || f::text FROM public.fmcsa_carriers f) x};
my $state = $node->safe_psql('postgres', $state_sql);

open(my $fh, '>', "$logs/mail.log") or die;
print $fh "2024-03-01T10:00:00+00:00 mx1 postfix/smtp[42]: AAAAA11111: to=<dot1\@c1.example>, "
  . "relay=mx.example[192.0.2.1]:25, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (ok)\n";
close($fh);

# --- a role without grants ----------------------------------------------------
my @denied = (
	[ q{SELECT * FROM pw.read_maillog('mail.log')}, qr/permission denied for function read_maillog/, 'read a mail log' ],
	[ q{SELECT * FROM pw.ingest_maillog('mail.log')}, qr/permission denied for function ingest_maillog/, 'ingest a mail log' ],
	[ q{SELECT * FROM pw.maillog_last_read()}, qr/permission denied for function maillog_last_read/, 'see the mail-log state' ],
	[ q{SELECT pw.confirm_deliveries('0 s')}, qr/permission denied for function confirm_deliveries/, 'confirm deliveries' ],
	[ q{SELECT pw.suppress('x@y.example', 'spite')}, qr/permission denied for function suppress/, 'suppress an address' ],
	[ q{SELECT pw.create_writeback_index()}, qr/permission denied for function create_writeback_index/, 'create the writeback index' ],
	[ q{SELECT pw.wake_tagger()}, qr/permission denied for function wake_tagger/, 'wake the tagger' ],
	[ q{SELECT * FROM pw.mx_tag(10)}, qr/permission denied for function mx_tag/, 'run MX tagging' ],
	[ q{SELECT * FROM pw.resolve_mx('google.example')}, qr/permission denied for function resolve_mx/, 'resolve MX (DNS)' ],
	[ q{INSERT INTO pw.profiles (name) VALUES ('mine')}, qr/permission denied for table profiles/, 'add a profile' ],
	[ q{UPDATE pw.profiles SET default_daily_cap = 100000}, qr/permission denied for table profiles/, 'raise a cap' ],
	[ q{UPDATE pw.warmup_ramp SET daily_cap = 100000}, qr/permission denied for table warmup_ramp/, 'change the ramp' ],
	[ q{INSERT INTO pw.mx_suffix_rules (suffix, label) VALUES ('evil.example', 'google')}, qr/permission denied for table mx_suffix_rules/, 'add an MX rule' ],
	[ q{UPDATE pw.carriers_config SET relation = 'public.other'}, qr/permission denied for table carriers_config/, 'repoint the carriers relation' ],
	[ q{DELETE FROM pw.suppressions}, qr/permission denied for table suppressions/, 'lift suppressions' ],
	[ q{DELETE FROM pw.blocked_domains}, qr/permission denied for table blocked_domains/, 'unblock domains' ],
	[ q{UPDATE pw.operators SET op_class = 'default'}, qr/permission denied for table operators/, 'reclassify operators' ],
	[ q{SELECT * FROM pw.deliveries}, qr/permission denied for table deliveries/, 'read deliveries' ],
	[ q{SELECT * FROM pw.mx_tag_progress}, qr/permission denied for view mx_tag_progress/, 'watch the tagging runs' ],
	[ q{SELECT * FROM pw.mx_tag_progress_rows()}, qr/permission denied for function mx_tag_progress_rows/, 'read the tagging runs\' progress' ],
	[ q{SELECT * FROM pw.select_sendable_carriers(10, 'default', 45, true)}, qr/permission denied/, 'claim carriers' ],
	[ q{SET pw_deliverability.maillog_directory = '/'}, qr/permission denied to set parameter "pw_deliverability.maillog_directory"/, 'SET maillog_directory' ],
	[ q{SELECT set_config('pw_deliverability.maillog_directory', '/etc', false)}, qr/permission denied to set parameter/, 'set_config maillog_directory' ],
	[ q{SET pw_deliverability.dns_servers = '127.0.0.1:53'}, qr/permission denied to set parameter "pw_deliverability.dns_servers"/, 'SET dns_servers' ],
	[ q{SET pw_deliverability.dns_max_qps = 0}, qr/permission denied to set parameter/, 'SET dns_max_qps' ],
	[ q{SET pw_deliverability.dns_timeout_retries = 10}, qr/permission denied to set parameter/, 'SET dns_timeout_retries' ],
	[ q{SET pw_deliverability.tag_batch_size = 1000000}, qr/permission denied to set parameter/, 'SET tag_batch_size' ],
	[ q{ALTER ROLE intruder SET pw_deliverability.maillog_directory = '/'}, qr/permission denied to set parameter/, 'ALTER ROLE SET maillog_directory' ],
	[ q{CREATE FUNCTION pw.lower(text) RETURNS text LANGUAGE sql RETURN 'x'}, qr/permission denied for schema pw/, 'plant a function in pw' ],
	[ q{CREATE TABLE pw.planted (x int)}, qr/permission denied for schema pw/, 'plant a table in pw' ],
);
for my $d (@denied)
{
	my ($ret, $out, $err) = as_role('intruder', $d->[0]);
	like($err, $d->[1], "no grants: cannot $d->[2]");
}
is($node->safe_psql('postgres', $state_sql), $state, 'the denied statements changed nothing');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pw.maillog_files}), '0', 'no mail log was read');

# every function that does DNS, reads files or writes results is revoked from PUBLIC
is($node->safe_psql('postgres', q{
    SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY 1)
      FROM pg_proc p
     WHERE p.pronamespace = 'pw'::regnamespace
       AND p.proname IN ('read_maillog', 'maillog_last_read', 'ingest_maillog', 'confirm_deliveries',
                         'create_writeback_index', 'suppress', 'wake_tagger', 'mx_tag', 'resolve_mx',
                         'maillog_profile')
       AND has_function_privilege('public', p.oid, 'EXECUTE')}), '',
	'no file, DNS or write function is executable by PUBLIC');

# --- the grants a campaign builder needs (README "Security") -------------------
$node->safe_psql('postgres', q{
    GRANT USAGE ON SCHEMA pw TO campaign;
    GRANT SELECT ON pw.profiles, pw.carriers_config, pw.verify_results, pw.operators,
                    pw.operator_classes, pw.warmup_ramp, pw.operator_ramp,
                    pw.blocked_domains, pw.suppressions, pw.maillog_daily TO campaign;
    GRANT SELECT, UPDATE ON public.fmcsa_carriers TO campaign;
});
my ($ret, $out, $err) = as_role('campaign',
	q{SELECT count(*) FROM pw.select_sendable_carriers(20, 'default', 45, true)});
is($out, '20', 'a campaign role with the documented grants claims') or diag($err);
($ret, $out, $err) = as_role('campaign', q{SELECT sum(selected) FROM pw.selection_composition(5, 'default', 45)});
is($out, '5', 'and runs the dry run') or diag($err);
($ret, $out, $err) = as_role('campaign', q{UPDATE pw.profiles SET default_daily_cap = 100000});
like($err, qr/permission denied for table profiles/, 'but still cannot change a profile');
($ret, $out, $err) = as_role('campaign', q{SELECT * FROM pw.mx_tag(1)});
like($err, qr/permission denied for function mx_tag/, 'nor tag MX');

# --- functions: SECURITY DEFINER and search_path --------------------------------
is($node->safe_psql('postgres', q{
    SELECT count(*) FROM pg_proc p
     WHERE p.pronamespace = 'pw'::regnamespace AND p.prosecdef
       AND NOT coalesce(p.proconfig @> '{"search_path=pg_catalog, pg_temp"}', false)}), '0',
	'no SECURITY DEFINER function without a fixed search_path');
# bodies resolved at call time (plpgsql, SQL with a string body) need a fixed
# search_path; SQL-standard bodies (RETURN, BEGIN ATOMIC) are bound at CREATE
is($node->safe_psql('postgres', q{
    SELECT coalesce(string_agg(p.oid::regprocedure::text, ', ' ORDER BY 1), '')
      FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
     WHERE p.pronamespace = 'pw'::regnamespace
       AND (l.lanname = 'plpgsql' OR (l.lanname = 'sql' AND p.prosqlbody IS NULL))
       AND NOT coalesce(p.proconfig @> '{"search_path=pg_catalog, pg_temp"}', false)
       -- a procedure that commits cannot have a SET clause: it sets the path itself
       AND NOT (p.prokind = 'p' AND p.prosrc ~ '^\s*DECLARE.*?BEGIN\s+PERFORM pg_catalog\.set_config\(''search_path'', ''pg_catalog, pg_temp'', true\);'
                AND regexp_count(p.prosrc, 'COMMIT;')
                    = regexp_count(p.prosrc, 'COMMIT;\s+PERFORM pg_catalog\.set_config\(''search_path'', ''pg_catalog, pg_temp'', true\);'))}), '',
	'every plpgsql or string-bodied SQL function has search_path = pg_catalog, pg_temp (a committing procedure sets it first and after each COMMIT)');
is($node->safe_psql('postgres', q{
    SELECT count(*) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
     WHERE p.pronamespace = 'pw'::regnamespace AND l.lanname NOT IN ('c', 'sql', 'plpgsql')}), '0',
	'no function in another language');

# --- the install and upgrade scripts: every object and reference schema-qualified
# (the install script of the default version, as the Makefile assembled it)
my $version = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'pw_deliverability'});
my $script = join "\n", map { slurp_file($_) } pw_srcdir() . "/pw_deliverability--$version.sql",
  sort glob(pw_srcdir() . '/sql-versions/pw_deliverability--*--*.sql');
# comments and the \echo guards out; dollar-quoted bodies kept (their table
# references count too)
$script =~ s/--[^\n]*//g;
$script =~ s/^\\echo[^\n]*//mg;
# descriptions are prose: the text of COMMENT ... IS '...' out (its target is
# still checked, below)
$script =~ s/(\bCOMMENT\s+ON\s+[^;']*?\s+IS\s+)'(?:[^']|'')*'/$1''/gi;
# the shipped bounce rules are data (patterns and notes in prose), no
# object is named in them
$script =~ s/(\bINSERT\s+INTO\s+pw\.bounce_rules\b[^;]*?\bFROM\s+\(VALUES\b).*?\)\s+AS\s+s\s+\(/$1 ) AS s (/gs;
my @comment_targets = $script =~ /\bCOMMENT\s+ON\s+(?:TABLE|VIEW|FUNCTION)\s+([\w.]+)/gi;
ok(@comment_targets > 60, 'the scripts describe their objects (' . scalar(@comment_targets) . ' COMMENTs)');
my @unqualified_comments = grep { !/^pw\./ } @comment_targets;
my @unqualified;
while ($script =~ /\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:UNIQUE\s+)?(TABLE|FUNCTION|PROCEDURE|VIEW|MATERIALIZED\s+VIEW|TYPE|DOMAIN|SEQUENCE|AGGREGATE|OPERATOR|SCHEMA)\s+(?:IF\s+NOT\s+EXISTS\s+)?("?[\w.]+"?)/gi)
{
	my ($kind, $name) = ($1, $2);
	push @unqualified, "CREATE $kind $name" unless $name =~ /^pw\./;
}
while ($script =~ /\bCREATE\s+(?:UNIQUE\s+)?INDEX\s+(?!%)(\w+)\s+ON\s+([\w.]+)/gi)
{
	push @unqualified, "CREATE INDEX $1 ON $2" unless $2 =~ /^pw\./;
}
while ($script =~ /\bCREATE\s+TRIGGER\s+(\w+).*?\bON\s+([\w.]+).*?EXECUTE\s+FUNCTION\s+([\w.]+)/gis)
{
	my ($trigger, $table, $fn) = ($1, $2, $3);
	push @unqualified, "CREATE TRIGGER $trigger ON $table ... $fn"
	  unless $table =~ /^pw\./ && $fn =~ /^pw\./;
}
while ($script =~ /\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM|REFERENCES|ON\s+FUNCTION|ON\s+TABLE|ALTER\s+TABLE|ALTER\s+FUNCTION)\s+([\w.]+)|pg_extension_config_dump\('([\w.]+)/gi)
{
	my ($what, $name) = defined $3 ? ('pg_extension_config_dump', $3) : ($1, $2);
	next if $name =~ /^(pw|pg_catalog|pg_temp)\./;
	# UPDATE OF col, OR UPDATE ON, ON UPDATE CASCADE, DO UPDATE SET
	next if $what =~ /^UPDATE$/i && $name =~ /^(OF|ON|SET|CASCADE|RESTRICT|NO|OR)$/i;
	next if $what =~ /^DELETE/i && $name =~ /^(CASCADE|RESTRICT)$/i;
	push @unqualified, "$what $name";
}
# relations read by FROM/JOIN: pw., pg_catalog., a function call, a CTE or a subquery
my %ctes = map { $_ => 1 } ($script =~ /\b(\w+)\s+AS\s+(?:MATERIALIZED\s+)?\(/gi);
while ($script =~ /\b(FROM|JOIN)\s+(?!\()([\w.]+)(\s*\()?/gi)
{
	my ($what, $name, $call) = ($1, $2, $3);
	next if $call || $name =~ /^(pw|pg_catalog|pg_temp|cron)\./;
	next if $ctes{$name} || $name =~ /^(LATERAL|ONLY|UNNEST|PUBLIC)$/i;
	push @unqualified, "$what $name";
}
push @unqualified, map { "COMMENT ON $_" } @unqualified_comments;
is(join("\n", @unqualified), '', 'the install and upgrade scripts name every object schema-qualified');

# --- a hostile search_path ----------------------------------------------------
# Functions and operators named like the built-ins and the extension's
# internals; each call is logged (the row survives unless the statement fails).
$node->safe_psql('postgres', q{
    CREATE SCHEMA evil;
    CREATE TABLE evil.calls (fn text NOT NULL, at timestamptz DEFAULT pg_catalog.clock_timestamp());
    GRANT USAGE ON SCHEMA evil TO PUBLIC;
    GRANT INSERT ON evil.calls TO PUBLIC;
    CREATE FUNCTION evil.hit(fn text) RETURNS void LANGUAGE sql SET search_path = pg_catalog
        AS $$ INSERT INTO evil.calls (fn) VALUES (fn) $$;
    CREATE FUNCTION evil.lower(t text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('lower'); RETURN pg_catalog.lower(t); END $$;
    CREATE FUNCTION evil.upper(t text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('upper'); RETURN pg_catalog.upper(t); END $$;
    CREATE FUNCTION evil.btrim(t text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('btrim'); RETURN pg_catalog.btrim(t); END $$;
    CREATE FUNCTION evil.rtrim(t text, c text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('rtrim'); RETURN pg_catalog.rtrim(t, c); END $$;
    CREATE FUNCTION evil.split_part(t text, d text, n integer) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('split_part'); RETURN pg_catalog.split_part(t, d, n); END $$;
    CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('now'); RETURN pg_catalog.now(); END $$;
    CREATE FUNCTION evil.format(f text, VARIADIC a text[]) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('format'); RETURN pg_catalog.format(f, VARIADIC a); END $$;
    CREATE FUNCTION evil.unnest(a anyarray) RETURNS SETOF anyelement LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('unnest'); RETURN QUERY SELECT pg_catalog.unnest(a); END $$;
    CREATE FUNCTION evil.make_interval(secs double precision) RETURNS interval LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('make_interval'); RETURN pg_catalog.make_interval(secs => secs); END $$;
    CREATE FUNCTION evil.hashtext(t text) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('hashtext'); RETURN pg_catalog.hashtext(t); END $$;
    CREATE FUNCTION evil.cardinality(a anyarray) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('cardinality'); RETURN pg_catalog.cardinality(a); END $$;
    CREATE FUNCTION evil.array_position(a anycompatiblearray, e anycompatible) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('array_position'); RETURN pg_catalog.array_position(a, e); END $$;
    CREATE FUNCTION evil.count_sf(n bigint) RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('count'); RETURN n + 1; END $$;
    CREATE AGGREGATE evil.count(*) (SFUNC = evil.count_sf, STYPE = bigint, INITCOND = '0');
    CREATE FUNCTION evil.max_sf(s timestamptz, v timestamptz) RETURNS timestamptz LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('max'); RETURN pg_catalog.timestamptz_larger(s, v); END $$;
    CREATE AGGREGATE evil.max(timestamptz) (SFUNC = evil.max_sf, STYPE = timestamptz);
    -- the extension's own internals
    CREATE FUNCTION evil.email_domain(e text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('email_domain'); RETURN pw.email_domain(e); END $$;
    CREATE FUNCTION evil.normalize_email(e text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('normalize_email'); RETURN pw.normalize_email(e); END $$;
    CREATE FUNCTION evil.operator_class(l text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('operator_class'); RETURN pw.operator_class(l); END $$;
    CREATE FUNCTION evil.profile_pool(p text) RETURNS text[] LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('profile_pool'); RETURN pw.profile_pool(p); END $$;
    CREATE FUNCTION evil.normalize_domain(d text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('normalize_domain'); RETURN pw.normalize_domain(d); END $$;
    -- operators
    CREATE FUNCTION evil.texteq(a text, b text) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('= text'); RETURN a OPERATOR(pg_catalog.=) b; END $$;
    CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.texteq);
    CREATE FUNCTION evil.textne(a text, b text) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('<> text'); RETURN a OPERATOR(pg_catalog.<>) b; END $$;
    CREATE OPERATOR evil.<> (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.textne);
    CREATE FUNCTION evil.textcat(a text, b text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('|| text'); RETURN a OPERATOR(pg_catalog.||) b; END $$;
    CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.textcat);
    CREATE FUNCTION evil.int8eq(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('= bigint'); RETURN a OPERATOR(pg_catalog.=) b; END $$;
    CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.int8eq);
    CREATE FUNCTION evil.tsle(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('<= timestamptz'); RETURN a OPERATOR(pg_catalog.<=) b; END $$;
    CREATE OPERATOR evil.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.tsle);
    CREATE FUNCTION evil.tsge(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('>= timestamptz'); RETURN a OPERATOR(pg_catalog.>=) b; END $$;
    CREATE OPERATOR evil.>= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.tsge);
    CREATE FUNCTION evil.datemi(a date, b date) RETURNS integer LANGUAGE plpgsql SET search_path = pg_catalog
        AS $$ BEGIN PERFORM evil.hit('- date'); RETURN a OPERATOR(pg_catalog.-) b; END $$;
    CREATE OPERATOR evil.- (LEFTARG = date, RIGHTARG = date, FUNCTION = evil.datemi);
    -- a naive function without a fixed search_path: the canary
    CREATE FUNCTION public.naive(e text) RETURNS text LANGUAGE plpgsql
        AS $$ BEGIN RETURN lower(btrim(e)); END $$;
});

my $calls_sql = q{SELECT coalesce(string_agg(fn || ' x' || n, ', ' ORDER BY fn), '')
                    FROM (SELECT fn, count(*) AS n FROM evil.calls GROUP BY fn) c};

# the harness can see a hijack: a function without a fixed search_path is hijacked
for my $path ('evil, pg_catalog, public, pw', 'evil, public, pw')
{
	$node->safe_psql('postgres', "TRUNCATE evil.calls");
	$node->safe_psql('postgres', "SET search_path = evil, pg_catalog, public, pw; SELECT public.naive(' X ')");
	like($node->safe_psql('postgres', $calls_sql), qr/btrim x1, lower x1/,
		'canary: an unprotected function is hijacked by evil, pg_catalog');
}

# the extension's API, as a superuser under each hostile path
$node->safe_psql('postgres', q{
    GRANT SELECT, UPDATE ON public.fmcsa_carriers TO campaign;
    INSERT INTO pw.profiles (name, warmup_start, include_catch_all, skip_big_mx)
    VALUES ('wide', current_date - 100, true, false);
});
my $round = 0;
for my $path ('evil, pg_catalog, public, pw', 'evil, public, pw')
{
	$round++;
	$node->safe_psql('postgres', "TRUNCATE evil.calls");
	open(my $lf, '>>', "$logs/mail.log") or die;
	print $lf "2024-03-0${round}T10:00:00+00:00 mx1 postfix/smtp[42]: BBBBB1111$round: to=<dot${round}1\@c${round}.example>, "
	  . "relay=mx.example[192.0.2.1]:25, delay=0.1, delays=0/0/0/0.1, dsn=5.1.1, status=bounced (no)\n";
	print $lf "2024-03-0${round}T10:00:00+00:00 mx1 postfix/smtp[42]: BBBBB2222$round: to=<DOT${round}2\@C${round}.example>, "
	  . "relay=mx.example[192.0.2.1]:25, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (ok)\n";
	close($lf);
	my @api = (
		q{SELECT * FROM pw.carriers_check('listmonk_sent_at')},
		q{SELECT pw.create_tagging_index()},
		q{SELECT pw.create_writeback_index()},
		q{SELECT * FROM pw.create_selection_indexes('default')},
		q{SELECT * FROM pw.selection_index_ddl('wide', true)},
		q{SELECT * FROM pw.resolve_mx('google.example')},
		q{SELECT * FROM pw.mx_tag(100)},
		q{CALL pw.mx_tag_batches(100)},
		q{SELECT * FROM pw.mx_backlog},
		q{SELECT * FROM pw.mx_labels},
		q{SELECT * FROM pw.mx_failing},
		q{SELECT * FROM pw.mx_tag_progress},
		q{SELECT pw.classify_mx(ARRAY['aspmx.l.google.com'])},
		q{SELECT pw.registrable_domain('mx1.Mail.Example.co.uk')},
		q{SELECT pw.domain_problem('bad_domain.example')},
		q{SELECT pw.email_domain(' A@B.Example. '), pw.normalize_email(' A@B '), pw.operator_class('google')},
		q{SELECT pw.daily_cap('default', 'google', 45), pw.warmup_day('default'), pw.profile_pool('wide')},
		q{SELECT * FROM pw.selection_composition(50, 'wide')},
		q{SELECT * FROM pw.select_sendable_carriers(30, 'default', 45)},
		q{SELECT * FROM pw.select_sendable_carriers(30, 'wide', NULL, true)},
		q{SELECT * FROM pw.read_maillog('mail.log')},
		q{SELECT * FROM pw.ingest_maillog('mail.log')},
		q{SELECT * FROM pw.maillog_last_read()},
		q{SELECT * FROM pw.operator_outcomes},
		q{SELECT pw.confirm_deliveries('0 s')},
		q{SELECT pw.suppress(' Hostile@Example.COM ', 'test')},
		q{INSERT INTO pw.suppressions (email, reason) VALUES (' Other} . $round . q{@Example.COM', 'test')},
		q{INSERT INTO pw.profiles (name, sent_column) VALUES ('p} . $round . q{', 'listmonk_sent_at')},
		q{INSERT INTO public.fmcsa_carriers (id, email, email_verify_result) VALUES (} . (5000 + $round) . q{, ' New@Google.Example', 'smtp_valid')},
		q{SELECT pw.wake_tagger(), pw.tagger_pid()},
	);
	for my $sql (@api)
	{
		my ($r, $o, $e) = $node->psql('postgres', "SET search_path = $path; $sql");
		is($r, 0, "[$path] runs: $sql") or diag($e);
	}
	# the campaign role too (its own hostile path)
	my ($r, $o, $e) = as_role('campaign', "SET search_path = $path; SELECT * FROM pw.select_sendable_carriers(5, 'wide', NULL, true)");
	is($r, 0, "[$path] a campaign role claims") or diag($e);
	is($node->safe_psql('postgres', $calls_sql), '', "[$path] no evil function or operator was called");
}

# the calls did their work
is($node->safe_psql('postgres', q{SELECT count(*) FROM public.fmcsa_carriers WHERE mx_provider = 'google'}),
	'2', 'mx_tag tagged under the hostile path');
is($node->safe_psql('postgres', q{SELECT string_agg(email, ',' ORDER BY email) FROM pw.suppressions}),
	'dot11@c1.example,dot21@c2.example,hostile@example.com,other1@example.com,other2@example.com',
	'ingest, suppress and the trigger worked under the hostile path');
is($node->safe_psql('postgres', q{SELECT pg_catalog.count(*) FROM public.fmcsa_carriers WHERE listmonk_sent_at IS NOT NULL}),
	'90', 'the claims were made (20 + 2 x (30 + 5))');
# the index expressions are the built-ins
is($node->safe_psql('postgres', q{
    SELECT count(*) FROM pg_depend d JOIN pg_class i ON i.oid = d.objid
     WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_proc'::regclass
       AND i.relname LIKE 'fmcsa_carriers%'
       AND d.refobjid IN (SELECT oid FROM pg_proc WHERE pronamespace = 'evil'::regnamespace)}), '0',
	'no index on the carriers uses an evil function');

# the carriers relation is never looked up through the search_path: an
# unqualified name is refused, so no schema early in a path can stand in:
# when it is set, and by the selection should it get past that check
$node->safe_psql('postgres', q{CREATE TABLE evil.fmcsa_carriers (LIKE public.fmcsa_carriers)});
($ret, $out, $err) = $node->psql('postgres', q{SET search_path = evil, public, pw;
    UPDATE pw.carriers_config SET relation = 'fmcsa_carriers'});
like($err, qr/carriers relation "fmcsa_carriers" is not schema-qualified/,
	'an unqualified carriers relation is refused when set');
$node->safe_psql('postgres', q{
    SET session_replication_role = replica;
    UPDATE pw.carriers_config SET relation = 'fmcsa_carriers';
});
($ret, $out, $err) = $node->psql('postgres', q{SET search_path = evil, public, pw;
    SELECT * FROM pw.select_sendable_carriers(5, 'wide', NULL, true)});
like($err, qr/carriers relation "fmcsa_carriers" is not schema-qualified/,
	'an unqualified carriers relation is refused');
is($node->safe_psql('postgres', q{SELECT count(*) FROM evil.fmcsa_carriers}), '0', 'and nothing went to the look-alike');
$node->safe_psql('postgres', q{UPDATE pw.carriers_config SET relation = DEFAULT});

$dns->stop;
$node->stop;
done_testing();
