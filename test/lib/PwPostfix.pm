# A private Postfix instance for tests, on 127.0.0.1 only, and an SMTP
# receiver that accepts, rejects (550) or defers (450) recipients.
#
# Postfix's master refuses to run unless it is root, and tests run as the
# postgres user.  The instance therefore runs in a user namespace where the
# test user is root and the user's subordinate ids (/etc/subuid,
# /etc/subgid; newuidmap from the uidmap package) map the postfix user and
# groups.  Nothing outside the test's directory is touched: own config
# directory, queue and data directories, and a maillog_file.
package PwPostfix;

use strict;
use warnings;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Utils;
use PostgreSQL::Test::Cluster;

# The unshare command line mapping us to root and our subordinate ids to
# the rest, or undef (with the reason in $@) when that is not possible.
sub _unshare_cmd
{
	my $user = getpwuid($<);
	for my $tool (qw(unshare newuidmap newgidmap postfix))
	{
		if (system("command -v $tool >/dev/null 2>&1") != 0)
		{
			$@ = "$tool not found";
			return undef;
		}
	}
	my %range;
	for my $kind (qw(uid gid))
	{
		open(my $fh, '<', "/etc/sub$kind") or do { $@ = "no /etc/sub$kind"; return undef };
		while (<$fh>)
		{
			chomp;
			my ($name, $start, $count) = split /:/;
			next unless defined $count && ($name eq $user || $name eq $<);
			$range{$kind} = [ $start, $count ];
			last;
		}
		close($fh);
		unless ($range{$kind} && $range{$kind}[1] >= 1000)
		{
			$@ = "no subordinate ${kind}s for $user in /etc/sub$kind";
			return undef;
		}
	}
	my $n = 65535;
	$n = $range{uid}[1] - 1 if $range{uid}[1] - 1 < $n;
	$n = $range{gid}[1] - 1 if $range{gid}[1] - 1 < $n;
	return [
		'unshare', '--map-root-user',
		"--map-users=$range{uid}[0],1,$n",
		"--map-groups=$range{gid}[0],1,$n"
	];
}

# Whether a private Postfix can run here; sets $@ to the reason if not.
sub available
{
	my $cmd = _unshare_cmd() or return 0;
	my $out = `@$cmd sh -c 'id -u; getent passwd postfix >/dev/null && echo postfix' 2>&1`;
	if ($out !~ /^0\npostfix$/m)
	{
		$@ = "user namespace not usable: $out";
		return 0;
	}
	return 1;
}

# The receiver's default answer to RCPT TO: local parts starting with "bad"
# are rejected with 550 5.1.1, "policy" with 550 5.7.1, "soft" with 450
# 4.2.0; everything else is accepted.
sub default_rcpt_reply
{
	my ($rcpt) = @_;
	return "550 5.1.1 <$rcpt>: Recipient address rejected: User unknown in virtual mailbox table"
	  if $rcpt =~ /^bad/i;
	return "550 5.7.1 <$rcpt>: Recipient address rejected: Access denied"
	  if $rcpt =~ /^policy/i;
	return "450 4.2.0 <$rcpt>: Recipient address rejected: Greylisted, try again later"
	  if $rcpt =~ /^soft/i;
	return "250 2.1.5 Ok";
}

# Starts an SMTP receiver on a free loopback port, a process per session.
# Options: rcpt => sub { reply line for a recipient } (default_rcpt_reply),
# host => the name it greets with.  Returns (pid, port).
sub start_receiver
{
	my (%opts) = @_;
	my $rcpt = $opts{rcpt} // \&default_rcpt_reply;
	my $host = $opts{host} // 'sink.test';
	my $sock = IO::Socket::INET->new(
		LocalAddr => '127.0.0.1',
		LocalPort => 0,
		Proto => 'tcp',
		Listen => 64,
		ReuseAddr => 1) or die "receiver: $!";
	my $port = $sock->sockport;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		$SIG{$_} = 'DEFAULT' for qw(TERM INT HUP);
		$SIG{CHLD} = 'IGNORE';
		while (my $c = $sock->accept)
		{
			my $child = fork();
			if (defined $child && $child == 0)
			{
				_serve($c, $host, $rcpt);
				POSIX::_exit(0);
			}
			close($c);
		}
		POSIX::_exit(0);
	}
	close($sock);
	return ($pid, $port);
}

# One SMTP session of the receiver.
sub _serve
{
	my ($c, $host, $rcpt) = @_;
	$c->autoflush(1);
	print $c "220 $host ESMTP\r\n";
	while (my $line = <$c>)
	{
		$line =~ s/\r?\n$//;
		if ($line =~ /^(EHLO|HELO)\b/i)
		{
			print $c "250-$host\r\n250 8BITMIME\r\n";
		}
		elsif ($line =~ /^MAIL FROM:/i)
		{
			print $c "250 2.1.0 Ok\r\n";
		}
		elsif ($line =~ /^RCPT TO:\s*<([^>]*)>/i)
		{
			print $c $rcpt->($1) . "\r\n";
		}
		elsif ($line =~ /^DATA/i)
		{
			print $c "354 End data with <CR><LF>.<CR><LF>\r\n";
			while (my $d = <$c>)
			{
				last if $d =~ /^\.\r?\n$/;
			}
			print $c "250 2.0.0 Ok: queued\r\n";
		}
		elsif ($line =~ /^QUIT/i)
		{
			print $c "221 2.0.0 Bye\r\n";
			last;
		}
		else
		{
			print $c "250 2.0.0 Ok\r\n";
		}
	}
	close($c);
}

# Creates and starts an instance under $opts{base}, logging to
# $opts{maillog}, relaying everything to 127.0.0.1:$opts{relay_port}.
sub new
{
	my ($class, %opts) = @_;
	my $self = bless {%opts}, $class;
	my $base = $self->{base};
	my $conf = "$base/postfix-conf";
	$self->{conf} = $conf;
	$self->{smtpd_port} = PostgreSQL::Test::Cluster::get_free_port();
	$self->{unshare} = _unshare_cmd() or die "cannot run Postfix: $@";
	mkdir $_ or die "$_: $!" for ($conf, "$base/postfix-queue", "$base/postfix-data");
	# the postfix user must be able to reach its queue and data directories
	chmod(0711, $base) or die "chmod $base: $!";

	my $relay = "smtp:[127.0.0.1]:$self->{relay_port}";
	my $lifetime = $opts{queue_lifetime} // '15s';
	_write("$conf/main.cf", <<"EOF");
compatibility_level = 3.6
queue_directory = $base/postfix-queue
data_directory = $base/postfix-data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
myhostname = pwtest.localdomain
myorigin = burner.test
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtputf8_enable = no
smtp_dns_support_level = disabled
transport_maps = inline:{ ok.test=$relay, bad.test=$relay, soft.test=$relay }
default_transport = $relay
relay_transport = $relay
virtual_alias_maps = inline:{ old\@ok.test=new\@ok.test }
smtpd_recipient_restrictions = permit_mynetworks, reject
maillog_file = $self->{maillog}
maillog_file_prefixes = $base
maximal_queue_lifetime = $lifetime
bounce_queue_lifetime = $lifetime
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 5s
EOF
	_write("$conf/master.cf", <<"EOF");
127.0.0.1:$self->{smtpd_port} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
EOF
	$self->_ns("chown postfix:postfix '$base/postfix-data' && postfix -c '$conf' start");
	# wait for smtpd to listen
	for (1 .. 100)
	{
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{smtpd_port});
		if ($s)
		{
			close($s);
			$self->{started} = 1;
			return $self;
		}
		usleep(100_000);
	}
	die "Postfix did not start listening on 127.0.0.1:$self->{smtpd_port}";
}

# Runs a shell command as root of our user namespace.
sub _ns
{
	my ($self, $cmd) = @_;
	my @cmd = (@{ $self->{unshare} }, 'sh', '-c', $cmd);
	system(@cmd) == 0 or die "failed: @cmd";
}

sub _write
{
	my ($path, $text) = @_;
	open(my $fh, '>', $path) or die "$path: $!";
	print $fh $text;
	close($fh);
}

# Submits one message over SMTP to the instance.
sub send_mail
{
	my ($self, $from, @to) = @_;
	require Net::SMTP;
	my $smtp = Net::SMTP->new('127.0.0.1', Port => $self->{smtpd_port}, Hello => 'client.test',
		Timeout => 10) or die "connect to Postfix: $@";
	$smtp->mail($from) or die 'MAIL FROM refused: ' . $smtp->message;
	for my $rcpt (@to)
	{
		$smtp->to($rcpt) or die "RCPT TO <$rcpt> refused: " . $smtp->message;
	}
	$smtp->data("From: <$from>\r\nSubject: is this the right contact?\r\n\r\nHello.\r\n")
	  or die 'DATA refused: ' . $smtp->message;
	$smtp->quit;
}

# Stops the instance (idempotent).
sub stop
{
	my ($self) = @_;
	return unless $self->{started};
	$self->{started} = 0;
	eval { $self->_ns("postfix -c '$self->{conf}' stop >/dev/null 2>&1") };
}

sub DESTROY
{
	my ($self) = @_;
	$self->stop;
}

1;
