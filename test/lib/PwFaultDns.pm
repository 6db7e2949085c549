# A misbehaving DNS server on 127.0.0.1 for the fault-injection tests: raw
# UDP and TCP sockets in a child process, so that it can send what a real
# server never would (garbage, wrong ids, cut answers, bad compression
# pointers, huge answers), drop queries at random, answer slowly, and be
# killed and restarted on the same port.
#
#   my $dns = PwFaultDns->start(records => { 'a.test' => { MX => [[10, 'mx.a.test']] },
#                                            'bad.test' => { fault => 'ptr_loop' } },
#                               bulk => { 'b1.test' => 'aspmx.l.google.com' },
#                               drop => 0.5, seed => 7, delay_ms => 0);
#   $dns->stop;  $dns->restart;          # same port
#   $dns->queries;                       # [time, name, type, proto, action], ...
#
# Faults (record key "fault"): garbage (random bytes), wrong_id, short (a
# header cut at 7 bytes), empty (0 bytes), truncated (a valid answer cut in
# the middle of its records, TC not set), ptr_loop (an answer name that is
# a compression pointer to itself), ptr_out (a pointer past the end),
# ancount (claims more answers than it holds), other_question (the right id
# for another name), bad_rdlength (an MX whose rdlength runs past the
# packet), tcp_cut (over TCP: a length prefix of 65535 and a few bytes,
# then close; over UDP the answer is marked truncated).  "silent" never
# answers.  Record key "drop_first" => N drops the first N UDP queries of
# each type for the name (a lost answer that the next try gets).  MX lists larger than 512 bytes are sent truncated (TC) over UDP
# and whole over TCP (up to 65535 bytes).
package PwFaultDns;

use strict;
use warnings;
use PwDns;
use parent -norequire, 'PwDns';    # servers, stop, queries, count, await_start
use Net::DNS;
use IO::Socket::INET;
use IO::Select;
use POSIX ();
use Time::HiRes qw(usleep time);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

# Starts the server; returns once it answers over TCP.
sub start
{
	my ($class, %opts) = @_;
	my $self = bless {%opts}, $class;
	$self->{records} //= {};
	$self->{bulk} //= {};
	$self->{port} //= PostgreSQL::Test::Cluster::get_free_port();
	$self->{name_col} = 1;    # the log lines start with the time
	$self->{log} = "$PostgreSQL::Test::Utils::tmp_check/pwfaultdns_$self->{port}.log";
	unlink $self->{log};
	$self->_spawn;
	return $self;
}

# Forks the serving child and waits until it accepts connections.
sub _spawn
{
	my ($self) = @_;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		eval { $self->_serve };
		POSIX::_exit($@ ? 1 : 0);
	}
	$self->{pid} = $pid;
	$self->await_start;
}

# Starts the server again on the same port.
sub restart
{
	my ($self) = @_;
	$self->stop;
	$self->_spawn;
}

# (queries: [time, name, type, proto, action] each)

# ---------------------------------------------------------------------------
# the child
# ---------------------------------------------------------------------------

# The serving loop: UDP queries and TCP connections on one port.
sub _serve
{
	my ($self) = @_;
	srand($self->{seed} // 1);
	open(my $lfh, '>>', $self->{log}) or die $!;
	$lfh->autoflush(1);
	$self->{lfh} = $lfh;
	my $udp = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $self->{port},
		Proto => 'udp', ReuseAddr => 1) or die "udp: $!";
	setsockopt($udp, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), 4 << 20);
	my $tcp = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $self->{port},
		Proto => 'tcp', Listen => 64, ReuseAddr => 1) or die "tcp: $!";
	my $sel = IO::Select->new($udp, $tcp);
	my %tcpbuf;
	for (;;)
	{
		for my $fh ($sel->can_read(1))
		{
			if ($fh == $udp)
			{
				my $data;
				my $peer = $udp->recv($data, 65535) or next;
				my $out = $self->_answer($data, 'udp');
				next unless defined $out;
				usleep($self->{delay_ms} * 1000) if $self->{delay_ms};
				$udp->send($out, 0, $peer);
			}
			elsif ($fh == $tcp)
			{
				my $c = $tcp->accept or next;
				$sel->add($c);
				$tcpbuf{$c} = '';
			}
			else
			{
				my $n = sysread($fh, my $chunk, 65536);
				if (!$n)
				{
					$sel->remove($fh);
					delete $tcpbuf{$fh};
					close $fh;
					next;
				}
				$tcpbuf{$fh} .= $chunk;
				while (length($tcpbuf{$fh}) >= 2)
				{
					my $len = unpack('n', $tcpbuf{$fh});
					last if length($tcpbuf{$fh}) < 2 + $len;
					my $q = substr($tcpbuf{$fh}, 2, $len);
					substr($tcpbuf{$fh}, 0, 2 + $len) = '';
					my $out = $self->_answer($q, 'tcp');
					next unless defined $out;
					if ($out eq 'CLOSE')
					{
						syswrite($fh, pack('n', 65535) . "\x12\x34garbage");
						$sel->remove($fh);
						delete $tcpbuf{$fh};
						close $fh;
						last;
					}
					usleep($self->{delay_ms} * 1000) if $self->{delay_ms};
					syswrite($fh, pack('n', length $out) . $out);
				}
			}
		}
	}
}

# The question section of a raw query (name labels + type + class), its
# lower-cased name and its type code; undef when it cannot be read.
sub _question
{
	my ($data) = @_;
	return undef if length($data) < 17;
	my $pos = 12;
	my @labels;
	while ($pos < length $data)
	{
		my $l = ord(substr($data, $pos, 1));
		last if $l == 0;
		return undef if $l > 63;
		push @labels, substr($data, $pos + 1, $l);
		$pos += 1 + $l;
	}
	return undef if $pos + 5 > length $data;
	my $qtype = unpack('n', substr($data, $pos + 1, 2));
	return (substr($data, 12, $pos + 5 - 12), lc join('.', @labels), $qtype);
}

# A header: id, flags (QR|AA|RD|RA plus extra bits), counts.
sub _header
{
	my ($id, $flags, $qd, $an, $ns, $ar) = @_;
	return pack('nnnnnn', $id, 0x8580 | $flags, $qd, $an // 0, $ns // 0, $ar // 0);
}

# Encodes a name without compression.
sub _name
{
	my ($n) = @_;
	return "\0" if $n eq '.' || $n eq '';
	return join('', map { chr(length $_) . $_ } split /\./, $n) . "\0";
}

# One MX record for the question name (a pointer to offset 12).
sub _mx_rr
{
	my ($pref, $host) = @_;
	my $rdata = pack('n', $pref) . _name($host);
	return pack('nnnNn', 0xC00C, 15, 1, 300, length $rdata) . $rdata;
}

# Builds the reply (bytes), or undef to stay silent, or 'CLOSE' (TCP cut).
sub _answer
{
	my ($self, $data, $proto) = @_;
	my ($qsec, $qname, $qtype) = _question($data);
	my $lfh = $self->{lfh};
	return undef unless defined $qsec;
	my $id = unpack('n', $data);
	my $tname = { 1 => 'A', 15 => 'MX', 28 => 'AAAA' }->{$qtype} // $qtype;
	my $r = exists $self->{records}{$qname} ? $self->{records}{$qname}
	  : exists $self->{bulk}{$qname} ? { MX => [ [ 10, $self->{bulk}{$qname} ] ] }
	  : undef;
	my $drop = $r && exists $r->{drop} ? $r->{drop} : ($self->{drop} // 0);
	my $first = $r && $r->{drop_first} && $proto eq 'udp'
	  && $self->{asked}{"$qname/$qtype"}++ < $r->{drop_first};
	my $action = !defined $r ? 'nxdomain'
	  : $r->{silent} ? 'silent'
	  : $first ? 'drop'
	  : ($proto eq 'udp' && $drop > 0 && rand() < $drop) ? 'drop'
	  : $r->{fault} && $qtype == 15 ? $r->{fault}
	  : 'answer';
	printf $lfh "%.4f %s %s %s %s\n", time, $qname, $tname, $proto, $action;
	return undef if $action eq 'silent' || $action eq 'drop';
	return _header($id, 0x0003, 1) . $qsec if $action eq 'nxdomain';

	if ($action eq 'garbage')
	{
		return join('', map { chr(int(rand(256))) } 1 .. 300);
	}
	return '' if $action eq 'empty';
	return substr(_header($id, 0, 1, 1), 0, 7) if $action eq 'short';
	if ($action eq 'tcp_cut')
	{
		return 'CLOSE' if $proto eq 'tcp';
		return _header($id, 0x0200, 1) . $qsec;
	}

	my @rrs;
	if ($qtype == 15)
	{
		@rrs = map { _mx_rr(@$_) } @{ $r->{MX} // [] };
	}
	elsif ($qtype == 1 || $qtype == 28)
	{
		for my $a (@{ $r->{ $qtype == 1 ? 'A' : 'AAAA' } // [] })
		{
			my $rd = $qtype == 1 ? pack('C4', split /\./, $a) : Net::DNS::RR->new("x AAAA $a")->rdata;
			push @rrs, pack('nnnNn', 0xC00C, $qtype, 1, 300, length $rd) . $rd;
		}
	}
	my $body = join('', @rrs);
	if ($action eq 'wrong_id')
	{
		return _header(($id + 1) & 0xFFFF, 0, 1, scalar @rrs) . $qsec . $body;
	}
	if ($action eq 'other_question')
	{
		my $other = _name("other-$qname") . pack('nn', $qtype, 1);
		return _header($id, 0, 1, scalar @rrs) . $other;
	}
	if ($action eq 'truncated')
	{
		my $full = _header($id, 0, 1, scalar @rrs) . $qsec . $body;
		return substr($full, 0, length(_header(0, 0, 0)) + length($qsec) + int(length($body) / 2) + 3);
	}
	if ($action eq 'ancount')
	{
		return _header($id, 0, 1, scalar(@rrs) + 5) . $qsec . $body;
	}
	if ($action eq 'ptr_loop' || $action eq 'ptr_out')
	{
		# the owner name of the answer: a pointer to itself, or past the end
		my $at = 12 + length $qsec;
		my $ptr = $action eq 'ptr_loop' ? 0xC000 | $at : 0xC000 | 0x3FF0;
		my $rdata = pack('n', 10) . pack('n', $ptr);
		return _header($id, 0, 1, 1) . $qsec . pack('nnnNn', $ptr, 15, 1, 300, length $rdata) . $rdata;
	}
	if ($action eq 'bad_rdlength')
	{
		my $rdata = pack('n', 10) . _name('mx.example');
		return _header($id, 0, 1, 1) . $qsec . pack('nnnNn', 0xC00C, 15, 1, 300, 4000) . $rdata;
	}
	my $full = _header($id, 0, 1, scalar @rrs) . $qsec . $body;
	return _header($id, 0x0200, 1) . $qsec if $proto eq 'udp' && length($full) > 512;
	die "answer too large for $qname" if length($full) > 65535;
	return $full;
}

1;
