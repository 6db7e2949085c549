# The background MX tagger after its database is dropped (issue 12 item 7):
# DROP DATABASE ... WITH (FORCE) ends it; it then says once that the database
# does not exist and waits, instead of failing with FATAL every
# bgw_restart_time; once the database is created again it serves it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use PwTest;

my $node = pw_node('tagdrop', conf => "pw_deliverability.database = 'tagdb'\n"
	  . "pw_deliverability.worker_naptime = 1\n");

# Occurrences of a pattern in the server log after byte offset $from.
sub log_count
{
	my ($re, $from) = @_;
	my $log = slurp_file($node->logfile);
	my @hits = substr($log, $from) =~ /$re/g;
	return scalar @hits;
}

my $tagger = q{SELECT coalesce(string_agg(coalesce(datname, '-'), ','), '') FROM pg_stat_activity
    WHERE backend_type = 'pw_deliverability mx tagger'};
my $fatal = qr/FATAL:  database "tagdb" does not exist/;
my $waiting = qr/mx tagger: database "tagdb" does not exist, waiting for it/;

$node->safe_psql('postgres', 'CREATE DATABASE tagdb');
ok($node->poll_query_until('postgres', $tagger, 'tagdb'), 'the tagger serves tagdb');

my $logpos = -s $node->logfile;
$node->safe_psql('postgres', 'DROP DATABASE tagdb WITH (FORCE)');
my $deadline = time + 60;
usleep(200_000) while time < $deadline && log_count($waiting, $logpos) == 0;
is(log_count($waiting, $logpos), 1, 'dropped: the tagger says once that its database does not exist');
ok($node->poll_query_until('postgres', $tagger, '-'), 'and waits connected to no database');
# two more restart intervals (bgw_restart_time 10 s): no FATAL loop
sleep(22);
cmp_ok(log_count($fatal, $logpos), '<=', 1, 'no FATAL every 10 s (at most the one start that found it gone)');
is(log_count($waiting, $logpos), 1, 'nor the message repeated');

$node->safe_psql('postgres', 'CREATE DATABASE tagdb');
ok($node->poll_query_until('postgres', $tagger, 'tagdb'), 'created again: the tagger serves it');

$node->stop;
done_testing();
