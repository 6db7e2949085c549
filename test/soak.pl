#!/usr/bin/perl
# Runs the jobs of the daily loop side by side against one database for a
# while and counts what each did and every error: the soak of TAP 076 and
# bench/soak.sh.  The background tagger is the server's own (configure
# pw_deliverability.database); this script runs the rest, each job in its
# own process, one psql call (one transaction) per step:
#
#   mx_tag     SELECT * FROM pw.mx_tag(MX_TAG_BATCH)           (small batches)
#   ingest     SELECT * FROM pw.ingest_maillog('soak.log')     (the log grows meanwhile)
#   feeder     appends the next chunk of a generated log to soak.log (no SQL)
#   confirm    SELECT pw.confirm_deliveries('0 seconds')
#   claimN     SELECT ... FROM pw.select_sendable_carriers(QUOTA, 'soak', claim => true)
#
#   perl test/soak.pl SECONDS LOGDIR [SERVERLOG]
#
# The database (PGHOST, PGPORT, PGDATABASE) holds the extension and
# generated carriers (test/generate_carriers.sql); LOGDIR is
# pw_deliverability.maillog_directory.  The script first creates the
# profile 'soak' (nothing held out, no caps that matter) and a log of the
# carriers' addresses (test/gen_maillog.pl, PW_SOAK_LOG_LINES lines,
# default 400000; half of the addresses are untagged carriers', so that the
# writeback and the tagging meet on the same rows), then runs the jobs for
# SECONDS, the log fed at a pace that lasts that long.  Every step's psql runs
# with application_name soak_JOB, so the server log tells who failed.
#
# Prints one line per job (steps, errors, what it did), the tagger's
# progress, and with SERVERLOG the errors the server logged meanwhile:
#   job mx_tag steps 120 errors 0 looked_up 5000 carriers 7000
#   ...
#   serverlog deadlocks 0 serialization 0 errors 0 (autovacuum tasks cancelled 0)
# Exit status 0 when no step failed and (with SERVERLOG) nothing was logged
# at ERROR or above, 1 otherwise (an autovacuum task cancelled because a job
# asked for a conflicting lock is counted apart, not as an error).
use strict;
use warnings;
use File::Basename qw(dirname);
use POSIX ();
use Time::HiRes qw(time sleep);

my ($seconds, $logdir, $serverlog) = @ARGV;
die "usage: $0 SECONDS LOGDIR [SERVERLOG]\n"
  unless defined $logdir && $seconds =~ /^\d+$/ && -d $logdir;
my $src = dirname(__FILE__);
my $claimers = $ENV{PW_SOAK_CLAIMERS} // 2;
my $mx_batch = $ENV{PW_SOAK_MX_TAG_BATCH} // 50;
my $quota = $ENV{PW_SOAK_QUOTA} // 20;
my $loglines = $ENV{PW_SOAK_LOG_LINES} // 400000;

# Runs one SQL step through psql; returns (ok, stdout).
sub step
{
	my ($job, $sql) = @_;
	local $ENV{PGAPPNAME} = "soak_$job";
	open(my $ph, '-|', 'psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-c', $sql)
	  or die "psql: $!";
	my $out = do { local $/; <$ph> } // '';
	close($ph);
	my $ok = $? == 0;
	chomp $out;
	return ($ok, $out);
}

# psql for the set-up, stopping at the first error.
sub setup_sql
{
	my ($sql) = @_;
	my $out = qx{psql -X -q -At -v ON_ERROR_STOP=1 -c "$sql"};
	die "set-up failed: $sql\n" if $? != 0;
	chomp $out;
	return $out;
}

# --- set-up -------------------------------------------------------------------
setup_sql(q{INSERT INTO pw.profiles (name, warmup_start, include_catch_all, skip_big_mx,
        per_op_run_cap, null_run_cap, default_daily_cap, note)
    VALUES ('soak', current_date - 100, true, false, 50, 10, 1000000, 'test/soak.pl')
    ON CONFLICT (name) DO NOTHING;
    INSERT INTO pw.warmup_ramp (profile, op_class, from_day, daily_cap)
    VALUES ('soak', 'big', 1, 1000000), ('soak', 'consumer', 1, 1000000)
    ON CONFLICT DO NOTHING});
my $addrfile = "$logdir/.soak_addresses";
system("psql -X -q -At -v ON_ERROR_STOP=1 -c "
	  . "\"(SELECT lower(btrim(email)) FROM public.fmcsa_carriers WHERE email LIKE '%_@_%' AND mx_provider IS NULL)"
	  . " UNION ALL (SELECT lower(btrim(email)) FROM public.fmcsa_carriers WHERE email LIKE '%_@_%' AND mx_provider IS NOT NULL"
	  . " ORDER BY hashint8(id) LIMIT (SELECT count(*) FROM public.fmcsa_carriers WHERE mx_provider IS NULL))\""
	  . " > $addrfile") == 0
  or die "could not list the carriers' addresses\n";
my $source = "$logdir/.soak_source.log";
system("PW_ADDRESSES=$addrfile perl $src/gen_maillog.pl $loglines 17 > $source") == 0
  or die "gen_maillog.pl failed\n";
open(my $fh, '>', "$logdir/soak.log") or die "$logdir/soak.log: $!";
close($fh);
my $cached0 = setup_sql('SELECT count(*) FROM pw.mx_domains');
my $untagged0 = setup_sql('SELECT count(*) FROM public.fmcsa_carriers WHERE mx_provider IS NULL');
my $logpos = defined $serverlog ? (-s $serverlog // 0) : 0;

# --- the jobs -----------------------------------------------------------------
# Each returns the SQL of its next step (undef: no SQL, done by the closure),
# the names of the numbers its output holds, and the pause between steps.
my $source_pos = 0;
my $source_size = -s $source;
my $chunk = 0;
my %jobs = (
	mx_tag => [ "SELECT looked_up, carriers_updated FROM pw.mx_tag($mx_batch)", [qw(looked_up carriers)], 0.05 ],
	ingest => [ q{SELECT lines, bounced, carriers_bounced FROM pw.ingest_maillog('soak.log')},
		[qw(lines bounced carriers_bounced)], 0.2 ],
	confirm => [ q{SELECT pw.confirm_deliveries('0 seconds')}, [qw(confirmed)], 0.5 ],
	feeder => [ undef, [qw(bytes)], 0.25 ],
	map { ("claim$_" => [ "SELECT count(*) FROM pw.select_sendable_carriers($quota, 'soak', claim => true)",
				[qw(claimed)], 0.05 ]) } 1 .. $claimers,
);

# Appends the next chunk of the source log (every fifth one large, so that
# ingests take both the scan and the index-probe writeback); returns bytes.
sub feed
{
	my $avg = $source_size / ($seconds / $jobs{feeder}[2]);
	my $want = int(++$chunk % 5 == 0 ? 3 * $avg : $avg / 2);

	return 0 if $source_pos >= $source_size;
	open(my $in, '<', $source) or die "$source: $!";
	seek($in, $source_pos, 0);
	read($in, my $buf, $want);
	my $more = <$in>;    # to the end of the line
	close($in);
	$buf .= $more if defined $more;
	open(my $out, '>>', "$logdir/soak.log") or die "soak.log: $!";
	print $out $buf;
	close($out);
	$source_pos += length($buf);
	return length($buf);
}

# Runs one job until the deadline, writes its counts to LOGDIR/.soak_JOB.
sub run_job
{
	my ($name, $deadline) = @_;
	my ($sql, $cols, $pause) = @{ $jobs{$name} };
	my %n = (steps => 0, errors => 0);
	$n{$_} = 0 for @$cols;
	# psql's error messages, for the report
	open(STDERR, '>', "$logdir/.soak_$name.err") or die;
	while (time < $deadline)
	{
		if (!defined $sql)
		{
			$n{bytes} += feed();
			$n{steps}++;
		}
		else
		{
			my ($ok, $out) = step($name, $sql);
			$n{steps}++;
			if (!$ok) { $n{errors}++; }
			else
			{
				my @v = split /\|/, $out;
				$n{ $cols->[$_] } += ($v[$_] // 0) for 0 .. $#$cols;
			}
		}
		sleep($pause);
	}
	open(my $o, '>', "$logdir/.soak_$name") or die;
	print $o join(' ', 'job', $name, map { ($_, $n{$_}) } 'steps', 'errors', @$cols), "\n";
	close($o);
}

my $deadline = time + $seconds;
my %pids;
for my $name (sort keys %jobs)
{
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		run_job($name, $deadline);
		POSIX::_exit(0);
	}
	$pids{$pid} = $name;
}
waitpid($_, 0) for keys %pids;

# --- the report ---------------------------------------------------------------
my $failed = 0;
for my $name (sort keys %jobs)
{
	open(my $i, '<', "$logdir/.soak_$name") or die "no report of job $name\n";
	my $line = <$i>;
	close($i);
	print $line;
	$failed = 1 if $line =~ / errors [1-9]/;
	my %msgs;
	open($i, '<', "$logdir/.soak_$name.err") or die;
	while (my $e = <$i>)
	{
		$msgs{"$1: $2"}++ if $e =~ /\b(ERROR|FATAL):\s+(.{0,100})/;
	}
	close($i);
	print "  $msgs{$_} x $_\n" for sort { $msgs{$b} <=> $msgs{$a} } keys %msgs;
}
printf "tagger+mx_tag cached domains %d -> %d, untagged carriers %d -> %d\n",
  $cached0, setup_sql('SELECT count(*) FROM pw.mx_domains'),
  $untagged0, setup_sql('SELECT count(*) FROM public.fmcsa_carriers WHERE mx_provider IS NULL');
if (defined $serverlog)
{
	open(my $l, '<', $serverlog) or die "$serverlog: $!";
	seek($l, $logpos, 0);
	my %c = (deadlocks => 0, serialization => 0, errors => 0, autovacuum => 0);
	my %by;
	while (my $line = <$l>)
	{
		next unless $line =~ /\b(ERROR|FATAL|PANIC):\s+(.*)/;
		my $msg = $2;
		# a job's lock request cancels autovacuum: PostgreSQL's rule, no failure
		if ($msg =~ /^canceling autovacuum task/)
		{
			$c{autovacuum}++;
			next;
		}
		$c{errors}++;
		$c{deadlocks}++ if $msg =~ /deadlock detected/;
		$c{serialization}++ if $msg =~ /could not serialize/;
		my ($who) = $line =~ /\] (\S+)/;
		$by{ ($who // '?') . ': ' . substr($msg, 0, 100) }++;
	}
	close($l);
	print "serverlog deadlocks $c{deadlocks} serialization $c{serialization} errors $c{errors}"
	  . " (autovacuum tasks cancelled $c{autovacuum})\n";
	print "  $by{$_} x $_\n" for sort { $by{$b} <=> $by{$a} } keys %by;
	$failed = 1 if $c{errors} > 0;
}
unlink glob("$logdir/.soak_*");
exit $failed;
