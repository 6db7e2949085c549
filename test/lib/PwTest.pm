# Shared helpers of the pw_deliverability TAP suite.
package PwTest;

use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Exporter 'import';

our @EXPORT = qw(pw_node pw_srcdir pw_load_generator);

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

# Loads test/generate_carriers.sql into a database of the node.
sub pw_load_generator
{
	my ($node, $db) = @_;
	$node->safe_psql($db // 'postgres',
		slurp_file(pw_srcdir() . '/test/generate_carriers.sql'));
}

1;
