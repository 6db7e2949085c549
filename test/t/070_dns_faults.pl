# DNS faults against MX tagging: malformed and oversized answers, the DNS
# server killed and restarted in the middle of a run, and 10,000 domains at
# once with half the queries dropped.  No fault may crash the backend (a
# crash would restart the whole cluster), lose a domain, or record a wrong
# label: every domain ends tagged correctly or failed with a backoff.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use PwTest;
use PwFaultDns;

my $node = pw_tagging_node('dnsfaults', conf => "pw_deliverability.worker_enabled = off\n"
	  . "restart_after_crash = on\n");
my $started = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

# The cluster has not restarted (no backend crashed) since the test began.
sub no_crash
{
	my ($what) = @_;
	is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'), $started, "$what: no backend crashed");
}

# --- malformed and oversized answers -----------------------------------------
my @huge = map { [ 10 + $_, sprintf('mx%04d.%s.bigprovider.net', $_, 'a' x 32) ] } 1 .. 900;
push @huge, [ 5, 'aspmx.l.google.com' ];
my %faulty = (
	'garbage.test'   => { fault => 'garbage',        MX => [ [ 10, 'mx.garbage.test' ] ] },
	'wrongid.test'   => { fault => 'wrong_id',       MX => [ [ 10, 'mx.wrongid.test' ] ] },
	'short.test'     => { fault => 'short',          MX => [ [ 10, 'mx.short.test' ] ] },
	'empty.test'     => { fault => 'empty',          MX => [ [ 10, 'mx.empty.test' ] ] },
	'cut.test'       => { fault => 'truncated',      MX => [ map { [ $_, "mx$_.cut-host.net" ] } 1 .. 6 ] },
	'ancount.test'   => { fault => 'ancount',        MX => [ [ 10, 'mx.ancount.test' ] ] },
	'ptrloop.test'   => { fault => 'ptr_loop' },
	'ptrout.test'    => { fault => 'ptr_out' },
	'rdlength.test'  => { fault => 'bad_rdlength' },
	'otherq.test'    => { fault => 'other_question', MX => [ [ 10, 'mx.otherq.test' ] ] },
	'tcpcut.test'    => { fault => 'tcp_cut',        MX => [ [ 10, 'mx.tcpcut.test' ] ] },
	'huge.test'      => { MX => \@huge },
	'longhost.test'  => { MX => [ [ 10, join('.', ('h' x 63) x 3, 'b' x 49, 'net') ] ] },
	'binary.test'    => { MX => [ [ 10, "\x01\x7f\xff.weird-mx.net" ] ] },
	'good.test'      => { MX => [ [ 10, 'mx1.emailsrvr.com' ] ] },
);
my $dns = PwFaultDns->start(records => \%faulty);
my $s1 = $dns->servers;
my $set1 = "SET pw_deliverability.dns_servers = '$s1'; SET pw_deliverability.dns_timeout_ms = 150;"
  . " SET pw_deliverability.dns_tries = 2;";
my %want = (
	'garbage.test'  => 'failed|NULL|1|timeout|t',
	'wrongid.test'  => 'failed|NULL|1|timeout|t',
	'short.test'    => 'failed|NULL|1|timeout|t',
	'empty.test'    => 'failed|NULL|1|timeout|t',
	'cut.test'      => 'failed|NULL|1|bad response|t',
	'ancount.test'  => 'failed|NULL|1|Misformatted domain name|t',
	'ptrloop.test'  => 'failed|NULL|1|Misformatted domain name|t',
	'ptrout.test'   => 'failed|NULL|1|Misformatted domain name|t',
	'rdlength.test' => 'failed|NULL|1|bad response|t',
	'otherq.test'   => 'failed|NULL|1|timeout|t',
	'tcpcut.test'   => 'failed|NULL|1|connection refused|t',
	'huge.test'     => 'mx|google|0||t',
	'longhost.test' => 'mx|mx:' . ('b' x 49) . '.net|0||t',
	# the only exchange is not a valid host name: nowhere to deliver
	'binary.test'   => 'no_records|none|0||t',
	'good.test'     => 'mx|rackspace|0||t',
);
my $domains_sql = q{SELECT domain, outcome, coalesce(label, 'NULL'), attempts,
      coalesce(last_error, ''), next_check_at > checked_at FROM pw.mx_domains};
my $id = 0;
$node->safe_psql('postgres', 'INSERT INTO fmcsa_carriers (id, email, email_verify_result) VALUES '
	  . join(', ', map { $id++; "($id, 'x\@$_', 'smtp_valid')" } sort keys %faulty));

# all of them in one run
my $t0 = time;
is($node->safe_psql('postgres', "$set1 SELECT looked_up, tagged + \"none\" + failed FROM pw.mx_tag()"),
	scalar(keys %faulty) . '|' . scalar(keys %faulty), 'one run over every faulty domain: each looked up and counted');
note(sprintf('malformed answers in one run: %.1f s', time - $t0));
no_crash('malformed answers in one run');
my %got = map { my ($d, @r) = split /\|/, $_, -1; ($d => join('|', @r)) } split /\n/,
  $node->safe_psql('postgres', $domains_sql);
is(scalar(keys %got), scalar(keys %want), 'every faulty domain is in the cache');
# c-ares 1.18 drops every connection to a server whose TCP answer broke off
# and fails the queries then in flight to it ("connection refused"): they
# are recorded failed with a backoff like any failure, never lost
my @odd = grep { $got{$_} ne $want{$_} && $got{$_} ne 'failed|NULL|1|connection refused|t' } sort keys %want;
is("@odd", '', 'each domain recorded as expected, or failed with a backoff alongside the broken TCP answer');

# each fault alone, so that its own outcome shows (good.test last)
$node->safe_psql('postgres', 'DELETE FROM pw.mx_domains; UPDATE fmcsa_carriers SET mx_provider = NULL');
$node->safe_psql('postgres', q{INSERT INTO pw.mx_domains (domain, outcome, next_check_at)
    SELECT pw.email_domain(email), 'failed', now() + interval '1 day' FROM fmcsa_carriers});
for my $d (sort { ($a eq 'good.test') <=> ($b eq 'good.test') || $a cmp $b } keys %want)
{
	$node->safe_psql('postgres', "UPDATE pw.mx_domains SET next_check_at = now() - interval '1 s' WHERE domain = '$d'");
	is($node->safe_psql('postgres', "$set1 SELECT looked_up FROM pw.mx_tag()"), '1', "$d alone: looked up");
	is($node->safe_psql('postgres', "$domains_sql WHERE domain = '$d'"), "$d|$want{$d}",
		"$d alone: outcome|label|attempts|error|backoff as expected");
}
no_crash('each malformed answer alone');
is($node->safe_psql('postgres', q{SELECT cardinality(mx_hosts), mx_hosts[1] FROM pw.mx_domains WHERE domain = 'huge.test'}),
	'901|aspmx.l.google.com', 'a 64 kB answer of 901 MX records is read whole, lowest preference first');
ok($dns->count('huge.test', 'MX', 'tcp') >= 1, 'the oversized answer came over TCP');
ok($dns->count('tcpcut.test', 'MX', 'tcp') >= 1, 'the cut TCP answer was asked for over TCP');
is($node->safe_psql('postgres', "$set1 SELECT count(*) FROM pw.resolve_mx('huge.test')"), '901',
	'resolve_mx returns the 901 records');
my ($ret, $out, $err) = $node->psql('postgres', "$set1 SELECT * FROM pw.resolve_mx('ptrloop.test')");
like($err, qr/MX lookup of "ptrloop.test" failed: (bad response|Misformatted domain name)/, 'resolve_mx: a compression loop is an error');
is($node->safe_psql('postgres', q{SELECT string_agg(coalesce(mx_provider, 'NULL'), ',' ORDER BY id) FROM fmcsa_carriers}),
	join(',', map { my $w = $want{$_}; my (undef, $l) = split /\|/, $w; $l } sort keys %faulty),
	'carriers got the labels of the good answers only');
no_crash('resolve_mx on faulty answers');
$dns->stop;

# --- the DNS server killed and restarted mid-batch ---------------------------
# (no retry within the run: the lookups under way during the outage are to
# fail, not to be asked again after the restart)
my $nk = 3000;
my %bulk = map { ("k$_.test" => ($_ % 5 ? "mx$_.host" . ($_ % 11) . '.net' : 'aspmx.l.google.com')) } 1 .. $nk;
$dns = PwFaultDns->start(bulk => \%bulk);
my $s2 = $dns->servers;
$node->safe_psql('postgres', qq{INSERT INTO fmcsa_carriers (id, email, email_verify_result)
    SELECT 1000 + i, 'c' || i || '\@k' || i || '.test', 'smtp_valid' FROM generate_series(1, $nk) i});
my $label_check = q{SELECT count(*) FROM fmcsa_carriers WHERE id > 1000 AND id <= 1000 + %d
    AND mx_provider IS DISTINCT FROM CASE WHEN (id - 1000) %% 5 = 0 THEN 'google'
        ELSE 'mx:host' || ((id - 1000) %% 11) || '.net' END};
my ($stdout, $stderr) = ('', '');
my $h = IPC::Run::start(
	[ 'psql', '-X', '-q', '-A', '-t', '-d', $node->connstr('postgres'), '-c',
	  "SET pw_deliverability.dns_servers = '$s2'; SET pw_deliverability.dns_max_qps = 1000;"
	  . " SET pw_deliverability.dns_timeout_ms = 200; SET pw_deliverability.dns_tries = 2;"
	  . " SET pw_deliverability.dns_timeout_retries = 0;"
	  . " SET pw_deliverability.tag_batch_size = 1000;"
	  . " SELECT looked_up, tagged, failed FROM pw.mx_tag()" ],
	'>', \$stdout, '2>', \$stderr);
my $seen = 0;
for (1 .. 200)
{
	$seen = scalar($dns->queries);
	last if $seen >= 800;
	usleep(25_000);
}
ok($seen >= 800, "the run is under way ($seen queries answered)");
$dns->stop;
usleep(1_000_000);
$dns->restart;
$h->finish;
is($stderr, '', 'the run ended without error');
my ($lk, $tk, $fk) = split /\|/, $stdout =~ s/\s+$//r;
is($lk, $nk, "every domain was looked up ($tk tagged, $fk failed)");
ok($fk > 0 && $tk > 0, 'some lookups failed during the outage, others succeeded');
is($node->safe_psql('postgres', q{SELECT count(*), count(*) FILTER (WHERE outcome = 'mx'),
    count(*) FILTER (WHERE outcome = 'failed' AND attempts = 1 AND label IS NULL
                     AND next_check_at > checked_at AND last_error IN ('timeout', 'connection refused'))
    FROM pw.mx_domains WHERE domain LIKE 'k%'}),
	"$nk|$tk|$fk", 'no domain lost: each recorded tagged, or failed with a backoff');
is($node->safe_psql('postgres', sprintf($label_check, $nk) . ' AND mx_provider IS NOT NULL'), '0',
	'the tagged carriers have the right labels');
no_crash('server killed mid-batch');
# once due, the failures are retried against the restarted server
$node->safe_psql('postgres', q{UPDATE pw.mx_domains SET next_check_at = now() WHERE outcome = 'failed' AND domain LIKE 'k%'});
is($node->safe_psql('postgres', "SET pw_deliverability.dns_servers = '$s2'; SELECT looked_up, failed FROM pw.mx_tag()"),
	"$fk|0", 'the failed domains are tagged after the restart');
is($node->safe_psql('postgres', sprintf($label_check, $nk)), '0', 'every carrier of the 3000 domains has its label');
$dns->stop;
$node->safe_psql('postgres', q{DELETE FROM fmcsa_carriers; DELETE FROM pw.mx_domains});

# --- 10,000 domains, half the queries dropped ---------------------------------
my $nd = 10000;
my $conc = 300;
%bulk = map { ("k$_.test" => ($_ % 5 ? "mx$_.host" . ($_ % 11) . '.net' : 'aspmx.l.google.com')) } 1 .. $nd;
$dns = PwFaultDns->start(bulk => \%bulk, drop => 0.5, seed => 42);
my $s3 = $dns->servers;
$node->safe_psql('postgres', qq{INSERT INTO fmcsa_carriers (id, email, email_verify_result)
    SELECT 1000 + i, 'c' || i || '\@k' || i || '.test', 'smtp_valid' FROM generate_series(1, $nd) i});
# no retry within the run (dns_timeout_retries, TAP 077): the check of
# dns_concurrency below takes all the queries of a name in a round for one
# query in flight from the first to the last
my $set3 = "SET pw_deliverability.dns_servers = '$s3'; SET pw_deliverability.dns_concurrency = $conc;"
  . " SET pw_deliverability.dns_timeout_ms = 150; SET pw_deliverability.dns_tries = 3;"
  . " SET pw_deliverability.dns_timeout_retries = 0;"
  . " SET pw_deliverability.retry_after = 0; SET pw_deliverability.tag_batch_size = 5000;";
$t0 = time;
my (@rounds, @marks);
for my $round (1 .. 10)
{
	push @marks, scalar($dns->queries);
	push @rounds, $node->safe_psql('postgres', "$set3 SELECT looked_up || '/' || failed FROM pw.mx_tag(20000)");
	last if $node->safe_psql('postgres', 'SELECT count(*) FROM fmcsa_carriers WHERE mx_provider IS NULL') eq '0';
	# a failure is due again at once (retry_after 0), one second later at most
	$node->safe_psql('postgres', q{UPDATE pw.mx_domains SET next_check_at = now() WHERE outcome = 'failed'});
}
my $elapsed = time - $t0;
note(sprintf('10k domains, half the queries dropped: rounds (looked up/failed) %s in %.1f s',
		join(' ', @rounds), $elapsed));
my @q = $dns->queries;
my $dropped = grep { $_->[4] eq 'drop' } @q;
ok($dropped > 0.4 * @q && $dropped < 0.6 * @q, "about half the queries were dropped ($dropped of " . scalar(@q) . ')');
is($node->safe_psql('postgres', sprintf($label_check, $nd)), '0', 'every carrier of the 10,000 domains ends tagged correctly');
is($node->safe_psql('postgres', q{SELECT count(*), count(*) FILTER (WHERE outcome = 'mx' AND attempts = 0) FROM pw.mx_domains}),
	"$nd|$nd", 'each domain once in the cache, resolved');
ok(@rounds <= 8, scalar(@rounds) . ' rounds of retries were enough');
ok($elapsed < 90, sprintf('within bounded time (%.1f s)', $elapsed));

# concurrency: a query is in flight at least from the server's first sight
# of it to its first answer (or its last retry); replaying the server's log
# in order, no more of those may be open at once than dns_concurrency allows
my (%endline, @round_of);
my $round = 0;
for my $i (0 .. $#q)
{
	$round++ while $round + 1 < @marks && $i >= $marks[ $round + 1 ];
	my $k = "$round $q[$i][1] $q[$i][2]";
	next if exists $endline{$k} && $q[ $endline{$k} ][4] eq 'answer';
	$endline{$k} = $i;
	$round_of[$i] = $k;
}
my (%open, $cur, $max) = ((), 0, 0);
for my $i (0 .. $#q)
{
	my $k = $round_of[$i] // next;
	if (!$open{$k}++)
	{
		$cur++;
		$max = $cur if $cur > $max;
	}
	$cur-- if $endline{$k} == $i;
}
ok($max <= $conc && $max > $conc / 4, "dns_concurrency honoured: at most $max of $conc queries in flight");
# --- disk full on the tagging state ---------------------------------------------
# a trigger raising ERRCODE_DISK_FULL stands in for a full disk on the cache,
# then on the carriers: the run fails cleanly and writes nothing
$node->safe_psql('postgres', q{
    CREATE FUNCTION public.disk_full() RETURNS trigger LANGUAGE plpgsql AS
      $$BEGIN RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = '53100'; END$$;
    INSERT INTO fmcsa_carriers (id, email, email_verify_result) VALUES (1, 'a@nx-extra.test', 'smtp_valid');
});
for my $t ([ 'pw.mx_domains', 'INSERT' ], [ 'public.fmcsa_carriers', 'UPDATE' ])
{
	my ($table, $op) = @$t;
	$node->safe_psql('postgres', "CREATE TRIGGER disk_full BEFORE $op ON $table FOR EACH ROW EXECUTE FUNCTION public.disk_full()");
	($ret, $out, $err) = $node->psql('postgres', "\\set VERBOSITY verbose\n$set3 SELECT pw.mx_tag()");
	like($err, qr/53100: could not extend file/, "disk full on $table: mx_tag fails with 53100");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM pw.mx_domains WHERE domain = 'nx-extra.test'}) . '/'
		  . $node->safe_psql('postgres', 'SELECT count(*) FROM fmcsa_carriers WHERE mx_provider IS NULL'),
		'0/1', "disk full on $table: nothing cached, nothing tagged");
	$node->safe_psql('postgres', "DROP TRIGGER disk_full ON $table");
}
is($node->safe_psql('postgres', "$set3 SELECT looked_up, \"none\", carriers_updated FROM pw.mx_tag()"), '1|1|1',
	'space again: the domain is looked up and its carrier tagged');
no_crash('10k domains with drops');

$dns->stop;
$node->stop;
done_testing();
