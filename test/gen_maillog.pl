#!/usr/bin/perl
# Writes a synthetic Postfix mail.log to stdout, for tests and benchmarks.
#
#   perl test/gen_maillog.pl LINES [SEED] [STYLE] [DOMAINS]
#
# LINES   about how many lines to write (whole messages are written)
# SEED    integer; the same seed gives the same file (default 1)
# STYLE   "traditional" (Nov 21 06:25:01) or "rfc3339" (default traditional)
# DOMAINS recipients are uN@dM.test with M < DOMAINS (default 50)
#
# With PW_ADDRESSES=FILE in the environment, recipients are drawn from that
# file (one address a line) instead.
#
# Each message has the lines Postfix writes around a delivery (smtpd
# connect/client, cleanup message-id, qmgr from=, one to three delivery
# lines, qmgr removed): about 40% of the lines are delivery-status lines.
# Recipients: ~80% sent, ~8% bounced (5.1.1 or 5.7.1), ~12% deferred, of
# which a third are later sent and a third expire with their message.
use strict;
use warnings;

my ($lines, $seed, $style, $domains) = @ARGV;
die "usage: $0 LINES [SEED] [STYLE] [DOMAINS]\n" unless defined $lines && $lines =~ /^\d+$/;
$seed //= 1;
$style //= 'traditional';
$domains //= 50;

srand($seed);
my @addresses;
if ($ENV{PW_ADDRESSES})
{
	open(my $fh, '<', $ENV{PW_ADDRESSES}) or die "$ENV{PW_ADDRESSES}: $!\n";
	chomp(@addresses = <$fh>);
	close($fh);
	die "no addresses in $ENV{PW_ADDRESSES}\n" unless @addresses;
}
my @mon = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);
my $t = 1700000000;    # a fixed start, one message per ~0.05 s
my $written = 0;
my $msg = 0;
my $out = '';

sub stamp
{
	my ($s) = @_;
	my @g = gmtime($s);
	if ($style eq 'rfc3339')
	{
		return sprintf('%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00',
			$g[5] + 1900, $g[4] + 1, $g[3], $g[2], $g[1], $g[0], int(rand(1000000)));
	}
	return sprintf('%s %2d %02d:%02d:%02d', $mon[$g[4]], $g[3], $g[2], $g[1], $g[0]);
}

sub qid
{
	return sprintf('%05X%05X', $msg & 0xFFFFF, int(rand(0xFFFFF)));
}

while ($written < $lines)
{
	$msg++;
	$t += rand(0.1);
	my $ts = stamp(int($t));
	my $q = qid();
	my $pid = 1000 + $msg % 30000;
	my @l;
	push @l, "$ts mx1 postfix/smtpd[$pid]: connect from client$msg.example[192.0.2." . ($msg % 250 + 1) . "]";
	push @l, "$ts mx1 postfix/smtpd[$pid]: $q: client=client$msg.example[192.0.2." . ($msg % 250 + 1) . "]";
	push @l, "$ts mx1 postfix/cleanup[" . ($pid + 1) . "]: $q: message-id=<m$msg\@burner.test>";
	my $nrcpt = 1 + int(rand(3));
	push @l, "$ts mx1 postfix/qmgr[900]: $q: from=<verify\@burner.test>, size=" . (800 + int(rand(4000))) . ", nrcpt=$nrcpt (queue active)";
	my $expire = 0;
	for my $r (1 .. $nrcpt)
	{
		my $u = int(rand(2000000));
		my $rcpt = @addresses ? $addresses[ $u % @addresses ] : "u$u\@d" . ($u % $domains) . ".test";
		my $x = rand();
		my $relay = "mx.d" . ($u % $domains) . ".test[198.51.100." . ($u % 200 + 1) . "]:25";
		if ($x < 0.80)
		{
			push @l, "$ts mx1 postfix/smtp[" . ($pid + 2) . "]: $q: to=<$rcpt>, relay=$relay, delay=0.4, delays=0.1/0/0.1/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as " . qid() . ")";
		}
		elsif ($x < 0.84)
		{
			push @l, "$ts mx1 postfix/smtp[" . ($pid + 2) . "]: $q: to=<$rcpt>, relay=$relay, delay=0.5, delays=0.1/0/0.1/0.3, dsn=5.1.1, status=bounced (host $relay said: 550 5.1.1 <$rcpt>: Recipient address rejected: User unknown in virtual mailbox table (in reply to RCPT TO command))";
		}
		elsif ($x < 0.88)
		{
			push @l, "$ts mx1 postfix/smtp[" . ($pid + 2) . "]: $q: to=<$rcpt>, relay=$relay, delay=0.5, delays=0.1/0/0.1/0.3, dsn=5.7.1, status=bounced (host $relay said: 550 5.7.1 Message rejected due to content restrictions (in reply to end of DATA command))";
		}
		else
		{
			push @l, "$ts mx1 postfix/smtp[" . ($pid + 2) . "]: $q: to=<$rcpt>, relay=none, delay=30, delays=0.1/0/30/0, dsn=4.4.1, status=deferred (connect to $relay: Connection timed out)";
			my $later = stamp(int($t) + 600);
			my $y = rand();
			if ($y < 0.33)
			{
				push @l, "$later mx1 postfix/smtp[" . ($pid + 3) . "]: $q: to=<$rcpt>, relay=$relay, delay=600, delays=599/0/0.1/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok)";
			}
			elsif ($y < 0.66)
			{
				$expire = 1;
			}
		}
	}
	if ($expire)
	{
		push @l, stamp(int($t) + 3600) . " mx1 postfix/qmgr[900]: $q: from=<verify\@burner.test>, status=expired, returned to sender";
	}
	push @l, "$ts mx1 postfix/qmgr[900]: $q: removed";
	push @l, "$ts mx1 postfix/smtpd[$pid]: disconnect from client$msg.example[192.0.2." . ($msg % 250 + 1) . "] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5";
	$out .= join("\n", @l) . "\n";
	$written += @l;
	if (length($out) > 1 << 20)
	{
		print $out;
		$out = '';
	}
}
print $out;
