# A lookup that timed out is retried within the same run
# (pw_deliverability.dns_timeout_retries): names whose first answers are
# lost end tagged, in the backend and with a resolver process, and a name
# that never answers is asked exactly (1 + retries) x dns_tries times.
# And the progress of running tagging runs in pw.mx_tag_progress: a run
# against a slow DNS server is seen with counts increasing, its row is gone
# after it ends, is cancelled or its backend is terminated; the background
# tagger's runs show there too.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use PwTest;
use PwFaultDns;

my $node = pw_tagging_node('retryprogress', conf => "pw_deliverability.database = 'postgres'\n"
	  . "pw_deliverability.worker_enabled = off\n");

# --- retry within the run -----------------------------------------------------
# the first two UDP queries of each lost*.test name are dropped: with
# dns_tries = 2, c-ares gives up on the first lookup with a timeout
my %records = (
	(map { ("lost$_.test" => { drop_first => 2, MX => [ [ 10, 'aspmx.l.google.com' ] ] }) } 1 .. 6),
	'good.test' => { MX => [ [ 10, 'mx1.emailsrvr.com' ] ] },
	'dead.test' => { silent => 1 },
);
my @lost = map { "lost$_.test" } 1 .. 6;
my $dns = PwFaultDns->start(records => \%records);
my $set = "SET pw_deliverability.dns_servers = '" . $dns->servers . "';"
  . ' SET pw_deliverability.dns_timeout_ms = 150; SET pw_deliverability.dns_tries = 2;';
my $id = 0;
$node->safe_psql('postgres', 'INSERT INTO fmcsa_carriers (id, email, email_verify_result) VALUES '
	  . join(', ', map { $id++; "($id, 'x\@$_', 'smtp_valid')" } sort keys %records));
my $outcomes = q{SELECT string_agg(domain || '=' || outcome || '/' || coalesce(label, 'NULL') || '/' || attempts
                                   || '/' || coalesce(last_error, ''), ' ' ORDER BY domain) FROM pw.mx_domains};
my $want_lost = join(' ', map { "$_=mx/google/0/" } @lost);

# Forgets the outcomes and restarts the DNS server (its drop counts with it).
sub reset_tagging
{
	$node->safe_psql('postgres', 'DELETE FROM pw.mx_domains; UPDATE fmcsa_carriers SET mx_provider = NULL');
	$dns->restart;
}

# in the backend (one batch, no resolver process)
is($node->safe_psql('postgres', "$set SELECT looked_up, tagged, failed FROM pw.mx_tag()"),
	'8|7|1', 'in the backend: the lost answers are asked for again in the run');
is($node->safe_psql('postgres', $outcomes),
	"dead.test=failed/NULL/1/timeout good.test=mx/rackspace/0/ $want_lost",
	'in the backend: every lost*.test domain tagged, the silent one failed with a timeout');
is($dns->count('lost1.test', 'MX'), 3, 'lost1.test: two dropped queries and the one answered');
is($dns->count('dead.test', 'MX'), 4, 'dead.test: dns_tries (2) x (1 + dns_timeout_retries (1)) queries, then failed');
is($node->safe_psql('postgres', q{SELECT count(*) FROM fmcsa_carriers WHERE mx_provider IS NULL}), '1',
	'only the silent domain\'s carrier is untagged');

# with a resolver process: batches of one domain at first, more than one batch
reset_tagging();
my ($ret, $out, $err) = $node->psql('postgres', "$set SET pw_deliverability.tag_batch_size = 2;"
	  . ' SET client_min_messages = debug1; SELECT looked_up, tagged, failed FROM pw.mx_tag()');
is($out, '8|7|1', 'with a resolver process: the lost answers are asked for again in the run');
like($err, qr/fetch and wait for DNS/, 'a resolver process looked them up');
is($node->safe_psql('postgres', $outcomes),
	"dead.test=failed/NULL/1/timeout good.test=mx/rackspace/0/ $want_lost",
	'with a resolver process: every lost*.test domain tagged');
is($dns->count('dead.test', 'MX'), 8, 'with a resolver process: dead.test asked 4 times more');

# dns_timeout_retries = 0 is the old behaviour: a timeout is recorded failed
reset_tagging();
is($node->safe_psql('postgres', "$set SET pw_deliverability.dns_timeout_retries = 0;"
	  . ' SELECT looked_up, tagged, failed FROM pw.mx_tag()'),
	'8|1|7', 'dns_timeout_retries = 0: each lost answer fails its domain');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pw.mx_domains WHERE outcome = 'failed'
    AND last_error = 'timeout' AND next_check_at > checked_at}), '7', 'failed with a timeout and a backoff');
# once due, they are tagged: the drops are over
$node->safe_psql('postgres', q{UPDATE pw.mx_domains SET next_check_at = now() WHERE domain LIKE 'lost%'});
is($node->safe_psql('postgres', "$set SELECT looked_up, tagged, failed FROM pw.mx_tag()"),
	'6|6|0', 'the next run tags them');
($ret, $out, $err) = $node->psql('postgres', 'SET pw_deliverability.dns_timeout_retries = 11');
like($err, qr/11 is outside the valid range for parameter "pw_deliverability.dns_timeout_retries" \(0 \.\. 10\)/,
	'dns_timeout_retries is bounded');
$dns->stop;
$node->safe_psql('postgres', 'DELETE FROM fmcsa_carriers; DELETE FROM pw.mx_domains');

# --- progress -----------------------------------------------------------------
# each answer takes 50 ms, one at a time: 40 domains take two seconds or more
my $np = 40;
my %bulk = map { ("p$_.test" => ($_ % 2 ? 'aspmx.l.google.com' : "mx.host$_.net")) } 1 .. 3 * $np;
$dns = PwFaultDns->start(bulk => \%bulk, delay_ms => 50);
my $servers = $dns->servers;
$set = "SET pw_deliverability.dns_servers = '$servers'; SET pw_deliverability.dns_timeout_ms = 3000;"
  . ' SET pw_deliverability.tag_batch_size = 4; SET pw_deliverability.dns_process = off;';
$node->safe_psql('postgres', qq{INSERT INTO fmcsa_carriers (id, email, email_verify_result)
    SELECT i, 'c' || i || '\@p' || i || '.test', 'smtp_valid' FROM generate_series(1, $np) i});
my $progress = q{SELECT pid, datname, background, started <= clock_timestamp(), phase, max_domains, domains_fetched,
    domains_looked_up, domains_written, domains_tagged + domains_none + domains_failed, carriers_labelled, batches,
    started FROM pw.mx_tag_progress};

# Starts a tagging run in a psql of its own.
sub start_run
{
	my ($sql, $outref, $errref) = @_;
	return IPC::Run::start(
		[ 'psql', '-X', '-q', '-A', '-t', '-d', $node->connstr('postgres'), '-c', $sql ],
		'>', $outref, '2>', $errref);
}

# Samples pw.mx_tag_progress until the run ends (or $secs); the rows seen.
sub sample_progress
{
	my ($h, $secs) = @_;
	my @rows;
	my $deadline = time + ($secs // 60);
	while ($h->pumpable && time < $deadline)
	{
		my $r = $node->safe_psql('postgres', $progress);
		push @rows, [ split /\|/, $r ] if $r ne '' && $r !~ /\n/;
		usleep(50_000);
		$h->pump_nb;
	}
	return @rows;
}

my ($stdout, $stderr) = ('', '');
my $h = start_run("$set SELECT pg_backend_pid(), looked_up, tagged FROM pw.mx_tag(1000)", \$stdout, \$stderr);
my @rows = sample_progress($h);
$h->finish;
is($stderr, '', 'the slow run ended without error');
my ($run_pid, $run_looked, $run_tagged) = split /\|/, $stdout =~ s/\s+$//r;
is("$run_looked|$run_tagged", "$np|$np", 'every domain of the slow run tagged');
my @looked = map { $_->[7] } @rows;
ok(@rows >= 5, 'the run was seen in pw.mx_tag_progress ' . scalar(@rows) . ' times');
is(scalar(grep { $_->[0] ne $run_pid } @rows), 0, 'each row is the run\'s backend');
is(scalar(grep { $_->[1] ne 'postgres' || $_->[2] ne 'f' || $_->[3] ne 't' || $_->[5] ne '1000' } @rows), 0,
	'with its database, not the background tagger, its start time and max_domains');
is(scalar(grep { !($_->[6] >= $_->[7] && $_->[7] >= $_->[8] && $_->[8] == $_->[9]) } @rows), 0,
	'fetched >= looked up >= written = tagged + none + failed, in every row');
is(scalar(grep { $looked[$_] < $looked[ $_ - 1 ] } 1 .. $#looked), 0, 'looked up never goes down');
ok(@looked && $looked[-1] > $looked[0] && $looked[-1] <= $np,
	"looked up increases while the run goes on (@looked)");
ok((grep { $_->[4] eq 'looking up' } @rows), 'the phase "looking up" was seen');
ok((grep { $_->[11] > 0 && $_->[10] > 0 } @rows), 'batches and labelled carriers are counted');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pw.mx_tag_progress'), '0', 'the row is gone after the run');

# Starts a run, waits until it shows, and ends its backend with $how.
sub end_run_with
{
	my ($how) = @_;
	$node->safe_psql('postgres', q{DELETE FROM pw.mx_domains; UPDATE fmcsa_carriers SET mx_provider = NULL});
	my ($o, $e) = ('', '');
	my $run = start_run("$set SELECT * FROM pw.mx_tag(1000)", \$o, \$e);
	my $pid = '';
	for (1 .. 400)
	{
		$pid = $node->safe_psql('postgres', 'SELECT pid FROM pw.mx_tag_progress WHERE domains_looked_up > 0');
		last if $pid ne '';
		usleep(25_000);
	}
	isnt($pid, '', "$how: the run shows");
	$node->safe_psql('postgres', "SELECT $how($pid)");
	$run->finish;
	like($e, $how eq 'pg_cancel_backend' ? qr/canceling statement/ : qr/terminat/, "$how: the run ended");
	is($node->safe_psql('postgres', 'SELECT count(*) FROM pw.mx_tag_progress'), '0', "$how: the row is gone");
}
end_run_with('pg_cancel_backend');
end_run_with('pg_terminate_backend');
is($node->safe_psql('postgres', 'SELECT count(*) FROM pw.mx_domains'), '0', 'the ended runs wrote nothing');

# the background tagger, with a resolver process
$node->safe_psql('postgres', qq{INSERT INTO fmcsa_carriers (id, email, email_verify_result)
    SELECT i, 'c' || i || '\@p' || i || '.test', 'smtp_valid' FROM generate_series($np + 1, 3 * $np) i});
$node->safe_psql('postgres', qq{ALTER SYSTEM SET pw_deliverability.dns_servers = '$servers';
    ALTER SYSTEM SET pw_deliverability.dns_timeout_ms = 3000;
    ALTER SYSTEM SET pw_deliverability.tag_batch_size = 8;
    ALTER SYSTEM SET pw_deliverability.worker_batch = 1000;
    ALTER SYSTEM SET pw_deliverability.worker_enabled = on});
$node->reload;
my $deadline = time + 30;
until ($node->safe_psql('postgres', 'SELECT pw.wake_tagger()') eq 't' || time > $deadline) { usleep(100_000); }
my @bg;
$deadline = time + 120;
while (time < $deadline)
{
	my $r = $node->safe_psql('postgres', $progress);
	push @bg, [ split /\|/, $r ] if $r ne '' && $r !~ /\n/;
	last if $node->safe_psql('postgres', 'SELECT count(*) FROM fmcsa_carriers WHERE mx_provider IS NULL') eq '0';
	usleep(50_000);
}
my $tagger = $node->safe_psql('postgres', 'SELECT pw.tagger_pid()');
# the first run only (the next one, finding nothing, may have started)
@bg = grep { $_->[12] eq $bg[0][12] } @bg if @bg;
is($node->safe_psql('postgres', 'SELECT count(*) FROM fmcsa_carriers WHERE mx_provider IS NULL'), '0',
	'the background tagger tagged the carriers');
my @bglooked = map { $_->[7] } grep { $_->[0] eq $tagger } @bg;
ok(@bg >= 3 && @bglooked == @bg, 'the background tagger\'s run was seen in pw.mx_tag_progress ' . scalar(@bg) . ' times');
is(scalar(grep { $_->[2] ne 't' || $_->[5] ne '1000' } @bg), 0, 'as the background tagger, with worker_batch');
ok(@bglooked && $bglooked[-1] > $bglooked[0], "its looked-up count increases (@bglooked)");
my $gone = 0;
for (1 .. 200)
{
	$gone = $node->safe_psql('postgres', 'SELECT count(*) FROM pw.mx_tag_progress') eq '0';
	last if $gone;
	usleep(50_000);
}
ok($gone, 'its row is gone once it is idle');
$dns->stop;

done_testing();
