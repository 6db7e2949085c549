# Domain names in databases not in UTF-8: LATIN1, WIN1252 and SQL_ASCII
# databases get the same A-labels as a UTF-8 one from pw.normalize_domain(),
# pw.registrable_domain(), pw.classify_mx() and pw.resolve_mx(), and their
# carriers the real operator from pw.mx_tag() against a scripted DNS server
# on 127.0.0.1; a name with no Unicode form is a failed lookup (the carrier
# stays untagged), never "none", and is never sent to DNS.
use strict;
use warnings;
use Encode qw(encode_utf8);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PwTest;
use PwDns;

my $dns = PwDns->start(records => {
		%{ PwDns::default_records() },
		'xn--9ca.com'      => { MX => [ [ 10, 'aspmx.l.google.com' ] ] },
		'xn--bcher-kva.de' => { MX => [ [ 10, 'mx.zoho.eu' ] ] },
	});
my $servers = $dns->servers;
my $node = pw_node('enc', conf => "pw_deliverability.worker_enabled = off\n"
	  . "pw_deliverability.dns_servers = '$servers'\n"
	  . "pw_deliverability.dns_timeout_ms = 200\n"
	  . "pw_deliverability.dns_tries = 2\n");

# A database in an encoding with the extension and carriers given as
# (id, hex of the address's bytes in that encoding).
sub carriers_db
{
	my ($db, $encoding, @carriers) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db ENCODING '$encoding' "
		  . "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
	my $rows = join(', ', map { "($_->[0], convert_from('\\x$_->[1]', '$encoding'), 'smtp_valid')" } @carriers);
	$node->safe_psql($db, qq{
        CREATE EXTENSION pw_deliverability;
        CREATE TABLE fmcsa_carriers (id bigint PRIMARY KEY, email text,
                                     email_verify_result text, mx_provider text);
        INSERT INTO fmcsa_carriers (id, email, email_verify_result) VALUES $rows;
    });
}

# The carriers' labels, "id=label" in id order.
sub labels
{
	my ($db) = @_;
	return $node->safe_psql($db, q{SELECT string_agg(id || '=' || coalesce(mx_provider, 'NULL'), ' ' ORDER BY id)
        FROM fmcsa_carriers});
}

# LATIN1: u@é.com and t@bücher.de, one byte per letter
carriers_db('l1', 'LATIN1',
	[ 1, '7540e92e636f6d' ],                # u@é.com
	[ 2, '744062fc636865722e6465' ],        # t@bücher.de
	[ 3, '7740676f6f676c652e6578616d706c65' ]);    # w@google.example
is($node->safe_psql('l1', q{SELECT pw.normalize_domain(convert_from('\x62fc636865722e6465', 'LATIN1')),
    pw.domain_problem(convert_from('\x62fc636865722e6465', 'LATIN1')) IS NULL}),
	'xn--bcher-kva.de|t', 'LATIN1: normalize_domain(bücher.de) is its A-label');
is($node->safe_psql('l1', q{SELECT pw.normalize_domain(convert_from('\x42dc434845522e4445', 'LATIN1'))}),
	'xn--bcher-kva.de', 'LATIN1: BÜCHER.DE is mapped to the same name');
is($node->safe_psql('l1', q{SELECT encode(convert_to(pw.email_domain(convert_from('\x7540e92e636f6d', 'LATIN1')), 'LATIN1'), 'hex'),
    pw.normalize_domain(pw.email_domain(convert_from('\x7540e92e636f6d', 'LATIN1')))}),
	'e92e636f6d|xn--9ca.com', 'LATIN1: email_domain(u@é.com) is é.com, whose A-label is xn--9ca.com');
is($node->safe_psql('l1', q{SELECT pw.registrable_domain(convert_from('\x6d61696c2e62fc636865722e6465', 'LATIN1')),
    pw.classify_mx(ARRAY[convert_from('\x6d782e62fc636865722e6465', 'LATIN1')])}),
	'xn--bcher-kva.de|mx:xn--bcher-kva.de', 'LATIN1: registrable_domain and classify_mx convert too');
my ($ret, $out, $err) = $node->psql('l1',
	q{SELECT preference || ' ' || exchange FROM pw.resolve_mx(convert_from('\x62fc636865722e6465', 'LATIN1'))});
is("$out$err", '10 mx.zoho.eu', 'LATIN1: resolve_mx asks DNS for the A-label');
is($node->safe_psql('l1', q{SELECT pw.domain_problem(convert_from('\x61852e636f6d', 'LATIN1'))}),
	'character not allowed in a host name', 'LATIN1: a C1 control is invalid, as in UTF-8');
# a client character LATIN1 cannot hold never reaches the extension
($ret, $out, $err) = $node->psql('l1',
	encode_utf8("SET client_encoding = 'UTF8'; SELECT pw.normalize_domain('\x{4f8b}\x{3048}.jp')"));
like($err, qr/has no equivalent in encoding "LATIN1"/, 'LATIN1: a name it cannot hold is refused on input');

is($node->safe_psql('l1', 'SELECT looked_up, tagged, "none", invalid, failed, carriers_updated FROM pw.mx_tag()'),
	'3|3|0|0|0|3', 'LATIN1: mx_tag looks up and tags all three');
is(labels('l1'), '1=google 2=zoho 3=google', 'LATIN1: u@é.com and t@bücher.de get their real operators');
is($node->safe_psql('l1', q{SELECT string_agg(encode(convert_to(domain, 'LATIN1'), 'hex') || ' ' || outcome || ' ' || label, ',' ORDER BY domain)
    FROM pw.mx_domains}),
	'62fc636865722e6465 mx zoho,676f6f676c652e6578616d706c65 mx google,e92e636f6d mx google',
	'LATIN1: the cache keeps the domains as the carriers have them');
is($dns->count('xn--9ca.com', 'MX'), 1, 'LATIN1: é.com was looked up as xn--9ca.com');

# WIN1252: converted as WIN1252 (0x9c is œ, a C1 control in LATIN1); 0x81
# has no Unicode equivalent
carriers_db('w1', 'WIN1252',
	[ 1, '7540e92e636f6d' ],                # u@é.com
	[ 2, '754061812e636f6d' ]);             # u@a<0x81>.com
is($node->safe_psql('w1', q{SELECT pw.normalize_domain(convert_from('\x9c757672652e6672', 'WIN1252'))}),
	'xn--uvre-f4a.fr', 'WIN1252: œuvre.fr');
is($node->safe_psql('w1', q{SELECT pw.normalize_domain(convert_from('\x61812e636f6d', 'WIN1252')) IS NULL,
    pw.domain_problem(convert_from('\x61812e636f6d', 'WIN1252')),
    pw.classify_mx(ARRAY[convert_from('\x6d782e61812e636f6d', 'WIN1252')])}),
	't|character without a Unicode equivalent in the database encoding|none',
	'WIN1252: a name with 0x81 has no Unicode form (and is no usable exchange)');
my $queries = scalar $dns->queries;
is($node->safe_psql('w1', 'SELECT looked_up, tagged, "none", invalid, failed, carriers_updated FROM pw.mx_tag()'),
	'2|1|0|0|1|1', 'WIN1252: the unconvertible domain counts as failed');
is(labels('w1'), '1=google 2=NULL', 'WIN1252: its carrier stays untagged, not none');
is($node->safe_psql('w1', q{SELECT outcome, label IS NULL, attempts, last_error, next_check_at > now()
    FROM pw.mx_domains WHERE domain LIKE 'a%'}),
	'failed|t|1|character without a Unicode equivalent in the database encoding|t',
	'WIN1252: recorded as failed with the reason, and retried later');
is(scalar $dns->queries, $queries + 1, 'WIN1252: only é.com was sent to DNS');

# SQL_ASCII: bytes that are UTF-8 are taken as UTF-8, others have no
# Unicode form
carriers_db('sa', 'SQL_ASCII',
	[ 1, '7540c3a92e636f6d' ],              # u@é.com in UTF-8
	[ 2, '7540e92e636f6d' ]);               # u@é.com in LATIN1
is($node->safe_psql('sa', 'SELECT looked_up, tagged, "none", invalid, failed, carriers_updated FROM pw.mx_tag()'),
	'2|1|0|0|1|1', 'SQL_ASCII: UTF-8 is looked up, other bytes fail');
is(labels('sa'), '1=google 2=NULL', 'SQL_ASCII: the UTF-8 carrier is tagged, the other stays untagged');

$node->stop;
$dns->stop;
done_testing();
