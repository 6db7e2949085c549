#!/usr/bin/perl
# The demo's loopback network: a DNS server answering for the sample domains,
# an SMTP receiver standing in for the recipients' MX hosts, and a private
# Postfix relaying everything to that receiver.  All on 127.0.0.1, on free
# ports chosen now.
#
#   test/demo_net.pl WORKDIR DOMAINS_TSV [dns]
#
# DOMAINS_TSV holds "domain<TAB>true_label<TAB>mx_host" lines (mx_host empty:
# the domain cannot receive mail; every other such domain gets a null MX, the
# rest NXDOMAIN).  Once everything listens, WORKDIR/net.env is written
# (DNS_SERVERS, SMTP_PORT, RECEIVER_PORT, MAILLOG) and the script waits.  It
# stops everything it started on SIGTERM, SIGINT or SIGHUP, and by itself
# when the process that started it goes away.  With "dns" it starts only
# the DNS server (net.env then holds DNS_SERVERS alone; bench/soak.sh).
#
# The receiver decides per recipient, deterministically (a hash of the
# address): most are accepted, 3% rejected with 550 5.1.1, 8% greylisted
# once (450, accepted on Postfix's retry).  Yahoo's MX hosts reject 40%, as
# in the seeds' "pull back if Yahoo spikes"; Microsoft's defer 40% once
# for the IP's reputation (4.7.650, a throttle); Google's block 25% as
# likely unsolicited mail (a block of the sender, no verdict on the
# address).  Every decision is appended to
# WORKDIR/receiver.log ("address decision").
use strict;
use warnings;
use Digest::MD5 qw(md5);
use File::Basename qw(dirname);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(usleep);

my ($work, $domains_file, $only) = @ARGV;
die "usage: $0 WORKDIR DOMAINS_TSV [dns]\n" unless defined $domains_file && -d $work;
my $dns_only = ($only // '') eq 'dns';

# PwDns and PwPostfix are written for the TAP suite and take two things from
# PostgreSQL's test modules: a free port and a scratch directory.  Provide
# those here instead of loading the test framework (which would take over
# STDOUT for a test log).
BEGIN
{
	$INC{'PostgreSQL/Test/Utils.pm'} = __FILE__;
	$INC{'PostgreSQL/Test/Cluster.pm'} = __FILE__;
}

package PostgreSQL::Test::Utils;
our $tmp_check;

package PostgreSQL::Test::Cluster;

# A TCP and UDP port free on 127.0.0.1 right now.
sub get_free_port
{
	for (1 .. 50)
	{
		my $t = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
			Proto => 'tcp', Listen => 1) or next;
		my $port = $t->sockport;
		my $u = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
			Proto => 'udp');
		close $t;
		next unless $u;
		close $u;
		return $port;
	}
	die "no free port on 127.0.0.1";
}

package main;

use lib dirname(__FILE__) . '/lib';
use PwDns;
use PwPostfix;

$PostgreSQL::Test::Utils::tmp_check = $work;
my $parent = getppid();
my ($dns, $postfix, $receiver_pid);

# Stops whatever has been started (idempotent).
sub shutdown_all
{
	if ($postfix)
	{
		$postfix->stop;
		# the queue belongs to the namespace's postfix user: remove it there
		eval { $postfix->_ns("rm -rf '$work/postfix-queue' '$work/postfix-data'") };
		$postfix = undef;
	}
	if ($receiver_pid)
	{
		kill 'TERM', $receiver_pid;
		waitpid($receiver_pid, 0);
		$receiver_pid = undef;
	}
	$dns->stop if $dns;
	$dns = undef;
}

my $stop = 0;
$SIG{$_} = sub { $stop = 1 } for qw(TERM INT HUP);
END { shutdown_all() if $$ == ($main::owner // 0); }
our $owner = $$;

# The sample domains: bulk MX answers, null MX / NXDOMAIN for dead ones.
my (%bulk, %records, %label_of);
open(my $dfh, '<', $domains_file) or die "$domains_file: $!";
my $dead = 0;
while (<$dfh>)
{
	chomp;
	my ($domain, $label, $mx) = split /\t/;
	$label_of{$domain} = $label;
	if (defined $mx && $mx ne '' && $mx ne '\N')
	{
		$bulk{$domain} = $mx;
	}
	elsif ($dead++ % 2 == 0)
	{
		$records{$domain} = { MX => [ [ 0, '.' ] ] };
	}
}
close $dfh;

die "cannot run a private Postfix here: $@\n" unless $dns_only || PwPostfix::available();

$dns = PwDns->start(records => \%records, bulk => \%bulk);
serve("DNS_SERVERS=" . $dns->servers . "\n") if $dns_only;

# The receiver: decide() answers each recipient and is logged.
my $decisions = "$work/receiver.log";
my $greydir = "$work/greylist";
mkdir $greydir;
my $receiver_port;
($receiver_pid, $receiver_port) = PwPostfix::start_receiver(
	host => 'mx.loopback',
	rcpt => sub {
		my ($what, $reply) = decide($_[0]);
		if (open(my $log, '>>', $decisions))
		{
			print $log lc($_[0]) . " $what\n";
			close $log;
		}
		return $reply;
	});

my $maillog = "$work/maillog/mail.log";
mkdir "$work/maillog";
$postfix = PwPostfix->new(base => $work, maillog => $maillog,
	relay_port => $receiver_port, queue_lifetime => '60s');

serve("DNS_SERVERS=" . $dns->servers . "\n"
	  . "SMTP_PORT=$postfix->{smtpd_port}\n"
	  . "RECEIVER_PORT=$receiver_port\n"
	  . "MAILLOG=$maillog\n");

# Writes WORKDIR/net.env, serves until told to stop, stops everything.
sub serve
{
	my ($vars) = @_;
	open(my $env, '>', "$work/net.env.tmp") or die $!;
	print $env $vars;
	close $env;
	rename("$work/net.env.tmp", "$work/net.env") or die $!;
	while (!$stop && getppid() == $parent)
	{
		usleep(200_000);
	}
	shutdown_all();
	exit 0;
}

# What the receiver answers to RCPT TO <$rcpt>.
sub decide
{
	my ($rcpt) = @_;
	my $addr = lc $rcpt;
	return ('accept', "250 2.1.5 Ok") if $addr =~ /\@burner\.test$/;
	my ($domain) = $addr =~ /\@(.*)$/;
	my $label = $label_of{ $domain // '' } // '';
	my $h = unpack('N', md5($addr)) / 4294967296;
	my $reject = $label eq 'mx:yahoodns.net' ? 0.40 : 0.03;
	my $greylist = $label eq 'microsoft' ? 0.40 : 0.08;
	if ($h < $reject)
	{
		return ('reject', "550 5.1.1 <$rcpt>: Recipient address rejected: User unknown");
	}
	# Google refuses some of the burner's mail as likely unsolicited: a
	# block of the sender, not a bad address
	if ($label eq 'google' && $h < $reject + 0.25)
	{
		# a multi-line reply, as Gmail's; Postfix folds it into one line
		return ('block', "550-5.7.1 [127.0.0.1] Our system has detected that this message is\r\n550-5.7.1 "
			  . "likely unsolicited mail. To reduce the amount of spam sent to Gmail,\r\n550-5.7.1 this "
			  . "message has been blocked.\r\n550 5.7.1 https://support.google.com/mail/?p=UnsolicitedMessageError");
	}
	if ($h >= 1 - $greylist)
	{
		my $mark = "$greydir/" . unpack('H*', md5($addr));
		if (!-e $mark)
		{
			if (open(my $m, ">", $mark)) { close $m; }
			# Microsoft rate-limits the burner for its IP's reputation
			return ('greylist', "451 4.7.650 The mail server [127.0.0.1] has been temporarily rate "
				  . "limited due to IP reputation. For e-mail delivery information, see https://postmaster.live.com (S775)")
			  if $label eq 'microsoft';
			return ('greylist', "450 4.7.1 <$rcpt>: Recipient address rejected: Greylisted, try again later");
		}
		return ('accept-after-greylist', "250 2.1.5 Ok");
	}
	return ('accept', "250 2.1.5 Ok");
}

