# The README's first command: `make demo` runs test/demo.sh.  Run it small,
# check that its report adds up (what the receiver rejected is what became
# hard_bounced and suppressed, the rest send_confirmed, tags match the
# ground truth), and that it leaves nothing running or behind, also when
# interrupted half-way.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use PwTest;
use PwPostfix;

plan skip_all => "no private Postfix possible here: $@" unless PwPostfix::available();

my $demo = pw_srcdir() . '/test/demo.sh';
my $batch = 150;

# Processes whose command line or working directory is under $dir.
sub leftovers
{
	my ($dir) = @_;
	my @found;
	for my $p (glob '/proc/[0-9]*')
	{
		my $cmd = '';
		if (open(my $fh, '<', "$p/cmdline"))
		{
			local $/;
			$cmd = <$fh> // '';
			close $fh;
		}
		$cmd =~ s/\0/ /g;
		my $cwd = readlink("$p/cwd") // '';
		push @found, "$p: $cmd (cwd $cwd)"
		  if index($cmd, $dir) >= 0 || index($cwd, $dir) == 0;
	}
	return @found;
}

# A full run, small.
my ($out, $err) = ('', '');
my $ok = IPC::Run::run([ 'bash', $demo ], '<', \undef, '>', \$out, '2>', \$err,
	init => sub { $ENV{PW_DEMO_CARRIERS} = 20000; $ENV{PW_DEMO_BATCH} = $batch; },
	IPC::Run::timeout(150));
ok($ok, 'the demo runs to the end') or diag("stdout:\n$out\nstderr:\n$err");
is($err, '', 'nothing on stderr');

my ($work) = $out =~ /throwaway cluster in (\S+)/;
ok(defined $work && $work =~ m{^/tmp/pw_demo\.}, 'the demo says where it works');
like($out, qr/^== \[\s*[\d.]+ s\] $_/m, "progress: $_")
  for ('MX tagging', 'selection: a day-17 run and a day-45 run', 'verification batch',
	'ingesting the mail log', 'report', 'done');
like($out, qr/day 17 sel\/allow \| day 45 sel\/allow/, 'day-17 and day-45 compositions side by side');

my ($summary) = $out =~ /^summary: (.*)$/m;
ok(defined $summary, 'a summary line') or diag($out);
my %s = map { split /=/, $_, 2 } split ' ', $summary // '';
is($s{carriers}, 20000, 'carriers generated');
is($s{untagged}, 0, 'every carrier tagged against the loopback DNS');
is($s{tag_agreement_pct}, '100.00', 'tags agree with the ground truth');
is($s{claimed}, $batch, 'the verification batch claimed');
is($s{queued}, $batch, 'Postfix queued every message');
is($s{final}, $batch, 'every recipient delivered or bounced');
cmp_ok($s{receiver_rejected}, '>', 0, 'the receiver rejected some recipients');
cmp_ok($s{greylisted}, '>', 0, 'the receiver greylisted some recipients');
is($s{hard_bounced_added}, $s{receiver_rejected}, 'each rejection became hard_bounced');
is($s{suppressed_added}, $s{receiver_rejected}, 'each rejection was suppressed');
cmp_ok($s{receiver_blocked}, '>', 0, 'the receiver blocked some of the burner\'s mail');
is($s{blocked_outcomes}, $s{receiver_blocked}, 'each block counted as a block');
is($s{blocked_hard_bounced}, 0, 'no blocked address hard_bounced');
is($s{send_confirmed_added}, $batch - $s{receiver_rejected} - $s{receiver_blocked},
	'every recipient delivered (greylisted and rate-limited ones included) became send_confirmed');
SKIP:
{
	skip 'no reputation brake in this build', 4 if ($s{braked} // '-') eq '-';
	cmp_ok($s{braked}, '>=', 2, 'operators braked');
	like($out, qr/^ default \| mx:yahoodns\.net .*\| paused \| bounce rate/m,
		'Yahoo\'s rejections pause it for the campaign');
	like($out, qr/^ verify  \| microsoft .*\| slowed \| throttle rate/m,
		'Microsoft\'s rate limiting slows down the verification stream');
	like($out, qr/^ +outcomes +\| google .*blocked [1-9]\d* \(block rate/m,
		'the report shows Google\'s blocks apart from hard bounces');
}
like($out, qr/^pw\.report\(\)/m, 'pw.report() shown') if $out =~ /pw\.braked_operators\):/;
if (defined $work)
{
	ok(!-e $work, 'the demo directory is removed');
	is(join("\n", leftovers($work)), '', 'nothing of the demo keeps running');
}

# Interrupted while the loopback network runs: everything still stops.
($out, $err) = ('', '');
my $h = IPC::Run::start([ 'bash', $demo ], '<', \undef, '>', \$out, '2>', \$err,
	init => sub { $ENV{PW_DEMO_CARRIERS} = 5000; },
	IPC::Run::timeout(120));
$h->pump until $out =~ /^== \[\s*[\d.]+ s\] MX tagging/m;
($work) = $out =~ /throwaway cluster in (\S+)/;
my @running = leftovers($work);
ok((grep { /postgres/ } @running) && (grep { /demo_net\.pl/ } @running)
	  && (grep { m{cwd \Q$work\E/postfix-queue} } @running),
	'while it runs, the cluster, the loopback network and Postfix are seen')
  or diag(join("\n", @running));
$h->signal('INT');
$h->finish;
isnt($h->result, 0, 'an interrupted demo fails');
ok(defined $work && !-e $work, 'the interrupted demo removed its directory') or diag($out . $err);
is(join("\n", leftovers($work // '/nonexistent')), '', 'nothing of the interrupted demo keeps running');

done_testing();
