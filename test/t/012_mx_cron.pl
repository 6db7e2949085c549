# pw.mx_tag() scheduled with pg_cron (both libraries preloaded): the job runs
# within a minute and tags the untagged carriers.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use PwTest;
use PwDns;

my $dns = PwDns->start();
my $node = pw_node('cron', preload => 'pw_deliverability,pg_cron',
	conf => "cron.database_name = 'postgres'\n"
	  . "cron.use_background_workers = on\n"
	  . "max_worker_processes = 16\n"
	  . "pw_deliverability.worker_enabled = off\n"
	  . "pw_deliverability.dns_servers = '" . $dns->servers . "'\n");
$node->safe_psql('postgres', q{
    CREATE EXTENSION pw_deliverability;
    CREATE EXTENSION pg_cron;
    CREATE TABLE fmcsa_carriers (id bigint PRIMARY KEY, email text, email_verify_result text, mx_provider text);
    INSERT INTO fmcsa_carriers VALUES (1, 'a@google.example', 'smtp_valid', NULL),
        (2, 'b@yahoo.example', 'smtp_valid', NULL), (3, 'c@nx.example', 'smtp_valid', NULL);
});
is($node->safe_psql('postgres', q{SELECT count(*) FROM fmcsa_carriers WHERE mx_provider IS NULL}), '3', 'untagged before');
$node->safe_psql('postgres', q{SELECT cron.schedule('pw-mx-tag', '* * * * *', 'SELECT * FROM pw.mx_tag(20000)')});

# one wait: the job fires at the next minute boundary
my $deadline = time + 75;
my $done = '';
while (time < $deadline)
{
	$done = $node->safe_psql('postgres', q{SELECT string_agg(mx_provider, ',' ORDER BY id) FROM fmcsa_carriers});
	last if $done eq 'google,mx:yahoodns.net,none';
	usleep(500_000);
}
is($done, 'google,mx:yahoodns.net,none', 'the scheduled pw.mx_tag() tagged the carriers');
is($node->safe_psql('postgres', q{SELECT status FROM cron.job_run_details ORDER BY runid LIMIT 1}), 'succeeded',
	'pg_cron recorded the run as succeeded');
is($node->safe_psql('postgres', q{SELECT count(*) FROM pw.mx_domains}), '3', 'the domains are cached');

$node->stop;
$dns->stop;
done_testing();
