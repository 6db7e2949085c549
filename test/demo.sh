#!/bin/bash
# The main job end to end on a throwaway cluster: generate carriers, tag them
# against a loopback DNS server, compare a day-17 and a day-45 selection,
# send a verification batch through a private loopback Postfix to receivers
# that accept some recipients and reject others, ingest the mail log, confirm
# deliveries, and report what changed.  Run through `make demo`, which builds
# a private installation (tmp_install/) and puts its binaries first on PATH.
# Everything it starts (cluster, DNS server, Postfix, receiver) is stopped on
# every way out, and its directory removed.
#
#   PW_DEMO_CARRIERS   carriers to generate (default 200000)
#   PW_DEMO_BATCH      size of the verification batch (default 300)
#   PW_DEMO_DAY        warmup day of the verification batch (default 45)
#   PW_DEMO_KEEP=1     leave the directory (data, mail log) behind for inspection
set -euo pipefail

SRC="$(cd "$(dirname "$0")/.." && pwd)"
. "$SRC/test/lib/cluster.sh"
CARRIERS="${PW_DEMO_CARRIERS:-200000}"
BATCH="${PW_DEMO_BATCH:-300}"
VDAY="${PW_DEMO_DAY:-45}"
export PGOPTIONS='-c client_min_messages=warning'
T0=$(date +%s%N)

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
step() { printf '\n== [%s s] %s\n' "$(awk -v ms="$(ms_since "$T0")" 'BEGIN { printf "%6.1f", ms / 1000 }')" "$*"; }
psql_q() { psql -X -q -v ON_ERROR_STOP=1 -P footer=off "$@"; }
psql_v() { psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

PW_PORT="${PW_DEMO_PORT:-}" pw_cluster_start demo "${PW_DEMO_KEEP:-0}" <<'EOF'
pw_deliverability.maillog_directory = '@WORK@/maillog'
EOF
# Postfix's own user must reach its queue below this directory
chmod 0711 "$WORK"
step "throwaway cluster in $WORK (port $PORT)"
psql_q -c 'CREATE EXTENSION pw_deliverability'

step "generating $CARRIERS sample carriers"
psql_q -f "$SRC/test/generate_carriers.sql"
start=$(date +%s%N)
psql_q -c "SELECT pw_generate_carriers($CARRIERS, seed => 42)" >/dev/null
echo "generated in $(ms_since "$start") ms"
psql_q -c "
SELECT email_verify_result AS result, count(*) AS carriers,
       round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS pct,
       count(*) FILTER (WHERE listmonk_sent_at IS NULL) AS unsent
  FROM fmcsa_carriers GROUP BY 1 ORDER BY 2 DESC"

step "loopback DNS server, SMTP receiver and Postfix"
psql_q -c "\\copy (SELECT domain, true_label, mx_host FROM pw_sample_domains) TO '$WORK/domains.tsv'"
pw_start_net "$WORK/domains.tsv"
echo "DNS $DNS_SERVERS ($(wc -l <"$WORK/domains.tsv") domains), Postfix 127.0.0.1:$SMTP_PORT," \
	"receiver 127.0.0.1:$RECEIVER_PORT, log $MAILLOG"

step "MX tagging"
echo "before:"
psql_q -c "SELECT * FROM pw.mx_backlog"
psql_q -c "SELECT pw.create_tagging_index()" >/dev/null
start=$(date +%s%N)
psql_q -c "SET pw_deliverability.dns_servers = '$DNS_SERVERS'" \
	-c "SET pw_deliverability.dns_concurrency = 50" \
	-c "SELECT * FROM pw.mx_tag(1000000)"
echo "tagged in $(ms_since "$start") ms; after:"
psql_q -c "SELECT * FROM pw.mx_backlog"
echo "largest operators (pw.mx_labels):"
psql_q -c "SELECT coalesce(label, '(untagged)') AS label, coalesce(op_class, '-') AS class, carriers
             FROM pw.mx_labels LIMIT 10"
echo "tags against the ground truth (pw_sample_domains), carriers that were untagged:"
psql_q -c "
SELECT count(*) AS tagged_now,
       count(*) FILTER (WHERE c.mx_provider = d.true_label) AS agree,
       round(100.0 * count(*) FILTER (WHERE c.mx_provider = d.true_label)
             / nullif(count(*), 0), 2) AS agree_pct
  FROM fmcsa_carriers c JOIN pw_sample_domains d ON d.domain = pw.email_domain(c.email)
 WHERE NOT d.tagged"

step "selection: a day-17 run and a day-45 run of 2,400 (profile default)"
psql_q -c "SELECT pw.create_selection_indexes('default'), pw.create_selection_indexes('verify'),
                  pw.create_writeback_index()" >/dev/null
echo "per operator bucket (the 16 taking most), selected / allowance:"
psql_q -c "
SELECT coalesce(a.bucket, b.bucket) AS bucket,
       coalesce(a.operator_class, b.operator_class) AS class,
       coalesce(a.available, b.available) AS available,
       coalesce(a.selected, 0) || ' / ' || coalesce(a.allowance, 0) AS \"day 17 sel/allow\",
       coalesce(b.selected, 0) || ' / ' || coalesce(b.allowance, 0) AS \"day 45 sel/allow\"
  FROM pw.selection_composition(2400, 'default', 17) a
  FULL JOIN pw.selection_composition(2400, 'default', 45) b USING (bucket)
 ORDER BY coalesce(b.selected, 0) + coalesce(a.selected, 0) DESC,
          coalesce(a.available, b.available) DESC, 1
 LIMIT 16"
echo "per run:"
psql_q -c "
SELECT d AS day, sum(selected) AS selected, count(*) FILTER (WHERE selected > 0) AS operators,
       coalesce(sum(selected) FILTER (WHERE operator_class = 'big'), 0) AS big,
       coalesce(sum(selected) FILTER (WHERE operator_class = 'consumer'), 0) AS consumer,
       coalesce(sum(selected) FILTER (WHERE operator_class IS NULL), 0) AS untagged
  FROM unnest(ARRAY[17, 45]) d, pw.selection_composition(2400, 'default', d)
 GROUP BY d ORDER BY d"

has_brake=$(psql_v -c "SELECT to_regclass('pw.braked_operators') IS NOT NULL")
has_report=$(psql_v -c "SELECT to_regproc('pw.report') IS NOT NULL")
if [ "$has_brake" = t ]; then
	# one batch gives each operator tens of outcomes, not the default
	# minimum sample of the brake
	psql_q -c "UPDATE pw.profiles SET brake_min_sample = 10"
	echo "(demo: the reputation brake judges an operator from 10 outcomes instead of 50)"
fi

step "verification batch: $BATCH carriers, profile verify, day $VDAY, claimed"
psql_q -c "
CREATE TABLE demo_before AS
SELECT email_verify_result AS result, count(*) AS carriers FROM fmcsa_carriers GROUP BY 1;
INSERT INTO demo_before SELECT '(suppressed)', count(*) FROM pw.suppressions"
psql_v -c "SELECT email FROM pw.select_sendable_carriers($BATCH, 'verify', $VDAY, claim => true)" \
	>"$WORK/batch.txt"
claimed=$(wc -l <"$WORK/batch.txt")
psql_q -c "
SELECT coalesce(pw.operator_class(mx_provider), 'untagged') AS class, email_verify_result AS result,
       count(*) AS claimed
  FROM fmcsa_carriers WHERE verify_sent_at IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2"
start=$(date +%s%N)
queued=$(perl "$SRC/test/demo_send.pl" "$SMTP_PORT" verify@burner.test <"$WORK/batch.txt")
echo "$queued of $claimed messages queued by Postfix in $(ms_since "$start") ms; waiting for delivery ..."
final_q="SELECT count(DISTINCT lower(coalesce(orig_recipient, recipient)))
           FROM pw.read_maillog('mail.log')
          WHERE status IN ('sent', 'bounced') AND recipient <> 'verify@burner.test'"
done_n=0
for i in $(seq 1 240); do
	done_n=$(psql_v -c "$final_q" 2>/dev/null || echo 0)
	[ "$done_n" -ge "$queued" ] && break
	if [ $((i % 10)) = 0 ]; then
		echo "  $done_n of $queued recipients final ($(grep -c 'status=deferred' "$MAILLOG" || true) deferrals so far)"
	fi
	sleep 0.5
done
echo "$done_n of $queued recipients delivered or bounced after $(ms_since "$start") ms"

step "ingesting the mail log and confirming deliveries"
psql_q -c "SELECT files, lines, events, sent, deferred, bounced, expired, carriers_bounced,
                  unknown_addresses, suppressed FROM pw.ingest_maillog('mail.log')"
psql_q -c "SELECT pw.confirm_deliveries(older_than => '0 seconds') AS confirmed"

step "report"
rejected=$(grep -c ' reject$' "$WORK/receiver.log" || true)
greylisted=$(grep -c ' greylist$' "$WORK/receiver.log" || true)
blocked=$(grep -c ' block$' "$WORK/receiver.log" || true)
echo "receiver: $rejected rejected with 550 5.1.1, $blocked blocked as likely unsolicited (550 5.7.1)," \
	"$greylisted greylisted or rate limited once (then accepted)"
psql_q -c "
CREATE TEMP VIEW demo_after AS
SELECT email_verify_result AS result, count(*) AS carriers FROM fmcsa_carriers GROUP BY 1
UNION ALL SELECT '(suppressed)', count(*) FROM pw.suppressions;
SELECT result, coalesce(b.carriers, 0) AS before, coalesce(a.carriers, 0) AS after,
       coalesce(a.carriers, 0) - coalesce(b.carriers, 0) AS change
  FROM demo_before b FULL JOIN demo_after a USING (result)
 WHERE coalesce(a.carriers, 0) <> coalesce(b.carriers, 0)
    OR result IN ('hard_bounced', 'send_confirmed', '(suppressed)')
 ORDER BY 1"
echo "today's outcomes of the busiest operators (pw.operator_outcomes):"
psql_q -c "SELECT mx_provider AS operator, pw.operator_class(mx_provider) AS class, sent, deferred,
                  hard_bounced, blocked, throttled, bounce_rate, block_rate, throttle_rate
             FROM pw.operator_outcomes
            WHERE day = current_date AND mx_provider <> '(not a carrier)'
            ORDER BY sent + bounced + deferred DESC, bounce_rate DESC, 1 LIMIT 10"
if [ "$has_brake" = t ]; then
	echo "braked operators (pw.braked_operators):"
	psql_q -c "SELECT * FROM pw.braked_operators ORDER BY profile, operator"
	braked=$(psql_v -c "SELECT count(*) FROM pw.braked_operators")
	echo "the brake in the next runs (selection_composition: braked buckets):"
	psql_q -c "
SELECT p AS profile, bucket, operator_class AS class, allowance, brake, brake_reason
  FROM unnest(ARRAY['default', 'verify']) p,
       pw.selection_composition(2400, p, CASE p WHEN 'verify' THEN $VDAY ELSE 45 END)
 WHERE brake IS NOT NULL ORDER BY 1, 2"
else
	echo "braked operators: no reputation brake in this build (pw.braked_operators missing)"
	braked=-
fi
if [ "$has_report" = t ]; then
	echo "pw.report() (per section the braked operators first, then the busiest, five in all, and the others in one line):"
	psql_q -c "SELECT * FROM pw.report('default', top => 5)"
fi
echo "the next verification run (day $VDAY) would take:"
psql_q -c "
SELECT coalesce(operator_class, 'untagged') AS class, sum(available) AS available,
       sum(allowance) AS allowance, sum(selected) AS selected
  FROM pw.selection_composition($BATCH, 'verify', $VDAY) GROUP BY 1 ORDER BY 1"

summary=$(psql_v -F ' ' -c "
SELECT 'carriers=' || (SELECT count(*) FROM fmcsa_carriers),
       'untagged=' || (SELECT count(*) FROM fmcsa_carriers WHERE mx_provider IS NULL),
       'tag_agreement_pct=' || (SELECT round(100.0 * count(*) FILTER (WHERE c.mx_provider = d.true_label)
                                      / nullif(count(*), 0), 2)
                                  FROM fmcsa_carriers c
                                  JOIN pw_sample_domains d ON d.domain = pw.email_domain(c.email)
                                 WHERE NOT d.tagged),
       'claimed=$claimed', 'queued=$queued', 'final=$done_n',
       'receiver_rejected=$rejected', 'receiver_blocked=$blocked', 'greylisted=$greylisted',
       'blocked_outcomes=' || (SELECT coalesce(sum(blocked), 0) FROM pw.maillog_daily),
       'blocked_hard_bounced=' || (SELECT count(*) FROM fmcsa_carriers c JOIN pw.deliveries d
                                     ON d.email = lower(btrim(c.email))
                                    WHERE d.blocked_count > 0 AND c.email_verify_result = 'hard_bounced'),
       'hard_bounced_added=' || (SELECT count(*) FROM fmcsa_carriers WHERE verify_sent_at IS NOT NULL
                                   AND email_verify_result = 'hard_bounced'),
       'send_confirmed_added=' || (SELECT count(*) FROM fmcsa_carriers WHERE verify_sent_at IS NOT NULL
                                     AND email_verify_result = 'send_confirmed'),
       'suppressed_added=' || ((SELECT count(*) FROM pw.suppressions)
                               - (SELECT carriers FROM demo_before WHERE result = '(suppressed)')),
       'braked=$braked'")
step "done"
echo "summary: $summary"
