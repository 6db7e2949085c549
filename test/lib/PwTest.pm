# Shared helpers of the pw_deliverability TAP suite.
package PwTest;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Exporter 'import';

our @EXPORT = qw(pw_node pw_srcdir pw_load_generator pw_maillog_node pw_tagging_node);

# The source tree (for fixtures and the generator).
sub pw_srcdir
{
	return $ENV{PW_SRCDIR} // '..';
}

# A started cluster with the library preloaded, plus any extra settings.
sub pw_node
{
	my ($name, %opts) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my $preload = $opts{preload} // 'pw_deliverability';
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = '$preload'\n" . ($opts{conf} // ''))
	  if $preload ne '';
	$node->start;
	return $node;
}

# A started cluster (pw_node's options) with the extension installed and an
# empty carriers table with the tagging index.
sub pw_tagging_node
{
	my ($name, %opts) = @_;
	my $node = pw_node($name, %opts);
	$node->safe_psql('postgres', 'CREATE EXTENSION pw_deliverability');
	$node->safe_psql('postgres', q{
    CREATE TABLE fmcsa_carriers (id bigint PRIMARY KEY, email text, email_verify_result text,
                                 mx_provider text, listmonk_sent_at timestamptz);
    SELECT pw.create_tagging_index();
});
	return $node;
}

# A started cluster reading mail logs from a fresh directory, the extension
# installed and a carriers table of $ncarriers rows (rN@x.test,
# catch_all_domain) with the writeback index; returns (node, logs dir, base
# temporary dir).
sub pw_maillog_node
{
	my ($name, $ncarriers) = @_;
	my $base = PostgreSQL::Test::Utils::tempdir();
	my $logs = "$base/logs";
	mkdir($logs) or die "$logs: $!";
	my $node = pw_node($name, conf => "pw_deliverability.maillog_directory = '$logs'\n");
	$node->safe_psql('postgres', 'CREATE EXTENSION pw_deliverability');
	$node->safe_psql('postgres', qq{
    CREATE TABLE fmcsa_carriers (id bigint PRIMARY KEY, email text, email_verify_result text,
                                 mx_provider text, listmonk_sent_at timestamptz);
    INSERT INTO fmcsa_carriers (id, email, email_verify_result)
        SELECT i, 'r' || i || '\@x.test', 'catch_all_domain' FROM generate_series(1, $ncarriers) i;
    SELECT pw.create_writeback_index();
});
	return ($node, $logs, $base);
}

# Loads test/generate_carriers.sql into a database of the node.
sub pw_load_generator
{
	my ($node, $db) = @_;
	$node->safe_psql($db // 'postgres',
		slurp_file(pw_srcdir() . '/test/generate_carriers.sql'));
}

1;
