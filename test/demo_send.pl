#!/usr/bin/perl
# Submits one verification message per address read from stdin to the SMTP
# server on 127.0.0.1:PORT (the demo's Postfix), over a few connections in
# parallel.  Prints the number of messages the server queued.
#
#   test/demo_send.pl PORT SENDER [CONNECTIONS] < addresses
use strict;
use warnings;
use Net::SMTP;

my ($port, $sender, $conns) = @ARGV;
die "usage: $0 PORT SENDER [CONNECTIONS] < addresses\n" unless $sender;
$conns //= 4;

my @rcpts = grep { $_ ne '' } map { chomp; $_ } <STDIN>;
my @kids;
for my $k (0 .. $conns - 1)
{
	my @mine = @rcpts[ grep { $_ % $conns == $k } 0 .. $#rcpts ];
	next unless @mine;
	pipe(my $r, my $w) or die "pipe: $!";
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		close $r;
		print $w send_all(@mine), "\n";
		close $w;
		exit 0;
	}
	close $w;
	push @kids, [ $pid, $r ];
}
my $queued = 0;
my $failed = 0;
for my $kid (@kids)
{
	my $fh = $kid->[1];
	my $n = <$fh>;
	$queued += $n if defined $n;
	waitpid($kid->[0], 0);
	$failed = 1 if $? != 0;
}
print "$queued\n";
exit $failed;

# Sends one message to each address over one connection; returns how many
# were queued.
sub send_all
{
	my @to = @_;
	my $smtp = Net::SMTP->new('127.0.0.1', Port => $port, Hello => 'builder.burner.test',
		Timeout => 30) or die "connect to 127.0.0.1:$port: $@\n";
	my $n = 0;
	for my $rcpt (@to)
	{
		$smtp->mail($sender) or die "MAIL FROM refused: " . $smtp->message;
		$smtp->to($rcpt) or die "RCPT TO <$rcpt> refused: " . $smtp->message;
		$smtp->data("From: <$sender>\r\nTo: <$rcpt>\r\n"
			  . "Subject: Is this the right contact for your fleet?\r\n"
			  . "\r\nHello, a short question about your carrier operation.\r\n")
		  or die "DATA refused: " . $smtp->message;
		$n++;
	}
	$smtp->quit;
	return $n;
}
