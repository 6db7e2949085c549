# A scripted DNS server on 127.0.0.1 for the MX tagging tests
# (Net::DNS::Nameserver, UDP and TCP on one free port, in a child process).
#
#   my $dns = PwDns->start(records => { 'a.example' => { MX => [[10, 'mx.a.example']] } },
#                          bulk => { 'c1.com' => 'aspmx.l.google.com' });
#   $node->append_conf('postgresql.conf', "pw_deliverability.dns_servers = '" . $dns->servers . "'");
#   $dns->count('a.example', 'MX');     # queries seen
#   $dns->stop;
#
# A record entry may hold MX => [[pref, host], ...] ('.' is a null MX),
# A => [addr, ...], AAAA => [addr, ...], CNAME => target, rcode => 'SERVFAIL'
# etc., silent => 1 (never answers), and healed => {...}: the entry used
# once $dns->heal has been called.  Names not listed get NXDOMAIN, except
# bulk names (domain => primary MX host).
package PwDns;

use strict;
use warnings;
use Net::DNS;
use Net::DNS::Nameserver;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

# The default script: one name per outcome the tagger knows.
sub default_records
{
	my @big = map { [ $_, sprintf('mx%02d.a-rather-long-mail-host-name-for-truncation.bigmail-provider.net', $_) ] } 1 .. 30;
	return {
		'google.example'  => { MX => [ [ 10, 'aspmx.l.google.com' ], [ 20, 'alt1.aspmx.l.google.com' ] ] },
		'multi.example'   => {
			MX => [
				[ 20, 'mx2.emailsrvr.com' ],
				[ 10, 'contoso-com.mail.protection.outlook.com' ],
				[ 30, 'aspmx.l.google.com' ]
			]
		},
		'yahoo.example'   => { MX => [ [ 1, 'mta7.am0.yahoodns.net' ] ] },
		'shared.example'  => { MX => [ [ 5, 'mx1.acme.iphmx.com' ] ] },
		'aonly.example'   => { A => ['192.0.2.10'] },
		'aaaaonly.example' => { AAAA => ['2001:db8::10'] },
		'nx.example'      => undef,
		'nullmx.example'  => { MX => [ [ 0, '.' ] ], A => ['192.0.2.11'] },
		'nodata.example'  => {},
		'servfail.example' => { rcode => 'SERVFAIL' },
		'refused.example' => { rcode => 'REFUSED' },
		'silent.example'  => { silent => 1 },
		'big.example'     => { MX => \@big },
		'cname.example'   => { CNAME => 'target.example' },
		'target.example'  => { MX => [ [ 10, 'mx01.mail.icloud.com' ] ] },
		'flaky.example'   => { rcode => 'SERVFAIL', healed => { MX => [ [ 10, 'mx1.secureserver.net' ] ] } },
		'moving.example'  => {
			MX     => [ [ 10, 'aspmx.l.google.com' ] ],
			healed => { MX => [ [ 10, 'mx1.emailsrvr.com' ] ] }
		},
		'xn--bcher-kva.example' => { MX => [ [ 10, 'mx.zoho.eu' ] ] },
	};
}

# Starts the server; returns once it answers.
sub start
{
	my ($class, %opts) = @_;
	my $records = $opts{records} // default_records();
	my $bulk = $opts{bulk} // {};
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $dir = $PostgreSQL::Test::Utils::tmp_check;
	my $log = "$dir/pwdns_$port.log";
	my $healfile = "$dir/pwdns_$port.healed";
	unlink $log, $healfile;

	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(my $lfh, '>>', $log) or POSIX::_exit(1);
		$lfh->autoflush(1);
		my $handler = sub {
			my ($qname, $qclass, $qtype, $peer, $query, $conn) = @_;
			$qname = lc $qname;
			my $proto = ($conn && $conn->{protocol} && $conn->{protocol} == 6) ? 'tcp' : 'udp';
			print $lfh "$qname $qtype $proto\n";
			my $r;
			if (exists $records->{$qname}) { $r = $records->{$qname}; }
			elsif (exists $bulk->{$qname}) { $r = { MX => [ [ 10, $bulk->{$qname} ] ] }; }
			return ('NXDOMAIN', [], [], [], { aa => 1 }) unless defined $r;
			$r = $r->{healed} if $r->{healed} && -e $healfile;
			return (undef) if $r->{silent};
			return ($r->{rcode}, [], [], []) if $r->{rcode};
			my @ans;
			my $name = $qname;
			if ($r->{CNAME})
			{
				push @ans, Net::DNS::RR->new("$name 300 IN CNAME $r->{CNAME}");
				$name = $r->{CNAME};
				$r = $records->{$name} // {};
			}
			if ($qtype eq 'MX')
			{
				push @ans, Net::DNS::RR->new("$name 300 IN MX $_->[0] $_->[1]") for @{ $r->{MX} // [] };
			}
			elsif ($qtype eq 'A' || $qtype eq 'AAAA')
			{
				push @ans, Net::DNS::RR->new("$name 300 IN $qtype $_") for @{ $r->{$qtype} // [] };
			}
			return ('NOERROR', \@ans, [], [], { aa => 1 });
		};
		my $ns = Net::DNS::Nameserver->new(
			LocalAddr    => ['127.0.0.1'],
			LocalPort    => $port,
			ReplyHandler => $handler,
			Verbose      => 0) or POSIX::_exit(2);
		$ns->main_loop;
		POSIX::_exit(0);
	}
	my $self = bless { pid => $pid, port => $port, log => $log, healfile => $healfile }, $class;
	$self->await_start;
	return $self;
}

# Returns once the server accepts TCP connections (dies after 10 s).
sub await_start
{
	my ($self) = @_;
	for (1 .. 200)
	{
		my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{port}, Proto => 'tcp');
		if ($s) { close $s; return; }
		usleep(50_000);
	}
	$self->stop;
	die ref($self) . " did not start on port $self->{port}";
}

# host:port for pw_deliverability.dns_servers.
sub servers
{
	my ($self) = @_;
	return "127.0.0.1:$self->{port}";
}

# Switches entries with a healed variant to it.
sub heal
{
	my ($self) = @_;
	open(my $fh, '>', $self->{healfile}) or die $!;
	close $fh;
}

# Every query seen, as [name, type, proto] (a subclass may log more fields
# first: {name_col} says where the name is).
sub queries
{
	my ($self) = @_;
	open(my $fh, '<', $self->{log}) or return ();
	my @q = map { chomp; [ split / / ] } <$fh>;
	close $fh;
	return @q;
}

# The number of queries for a name (and type, and protocol) seen.
sub count
{
	my ($self, $name, $type, $proto) = @_;
	my $c = $self->{name_col} // 0;
	return scalar grep {
		$_->[$c] eq lc $name
		  && (!defined $type || $_->[ $c + 1 ] eq $type)
		  && (!defined $proto || $_->[ $c + 2 ] eq $proto)
	} $self->queries;
}

# Kills the server (SIGKILL, as a crash would).
sub stop
{
	my ($self) = @_;
	return unless $self->{pid};
	kill 'KILL', $self->{pid};
	waitpid($self->{pid}, 0);
	$self->{pid} = undef;
}

sub DESTROY
{
	my ($self) = @_;
	$self->stop if $self->{pid} && $$ != $self->{pid};
}

1;
