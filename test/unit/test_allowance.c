/*-------------------------------------------------------------------------
 *
 * test_allowance.c
 *	  Unit test of the selection's allowance policy (src/select/allowance.c),
 *	  built and run without PostgreSQL by "make unit-check" (part of "make
 *	  test").  Prints TAP; exits non-zero when a case fails.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "select/allowance.h"

static int	ntests;
static int	nfailed;

/* Reports one case: got must equal want. */
static void
check(const char *what, int64_t got, int64_t want)
{
	ntests++;
	if (got == want)
		printf("ok %d - %s\n", ntests, what);
	else
	{
		nfailed++;
		printf("not ok %d - %s: got %" PRId64 ", want %" PRId64 "\n",
			   ntests, what, got, want);
	}
}

/* The class caps of the cases: default 80, big 50 (consumer has none). */
static const SelClassCap class_caps[] = {
	{"default", 80},
	{"big", 50},
};

/* The rules of the cases: past the warmup, run caps 60 / 40, slow 0.5. */
static SelAllowanceRules
rules_after_warmup(void)
{
	SelAllowanceRules r;

	memset(&r, 0, sizeof(r));
	r.hold = false;
	r.per_op_run_cap = 60;
	r.null_run_cap = 40;
	r.brake_slow_factor = 0.5;
	r.nclass_caps = 2;
	r.class_caps = class_caps;
	return r;
}

/* A bucket of class op_class with sent_today sends. */
static SelBucketFacts
bucket(const char *op_class, int64_t sent_today)
{
	SelBucketFacts f;

	memset(&f, 0, sizeof(f));
	f.op_class = op_class;
	f.sent_today = sent_today;
	return f;
}

/* Daily caps: override, else the class's cap, else 0. */
static void
test_daily_cap(void)
{
	SelAllowanceRules r = rules_after_warmup();
	SelBucketFacts f = bucket(NULL, 0);

	check("daily cap: no class is the default class's ramp", SelDailyCap(&r, &f), 80);
	f = bucket("big", 0);
	check("daily cap: a big operator gets the big ramp", SelDailyCap(&r, &f), 50);
	f = bucket("consumer", 0);
	check("daily cap: a class without a ramp row gets 0", SelDailyCap(&r, &f), 0);
	f.has_override = true;
	f.override_cap = 7;
	check("daily cap: an operator override wins over the class", SelDailyCap(&r, &f), 7);
	f = bucket("default", 0);
	check("daily cap: the class named default is the default class", SelDailyCap(&r, &f), 80);
	r.nclass_caps = 0;
	f = bucket(NULL, 0);
	check("daily cap: no cap for the class gets 0", SelDailyCap(&r, &f), 0);
}

/* Allowance: run caps, today's sends, the warmup hold, the untagged bucket. */
static void
test_allowance(void)
{
	SelAllowanceRules r = rules_after_warmup();
	SelBucketFacts f = bucket(NULL, 0);

	check("allowance: the run cap bounds a fresh operator", SelAllowance(&r, &f), 60);
	f.sent_today = 30;
	check("allowance: today's sends come off the daily cap", SelAllowance(&r, &f), 50);
	f.sent_today = 95;
	check("allowance: never below 0 when over the daily cap", SelAllowance(&r, &f), 0);
	f = bucket("big", 10);
	check("allowance: big after the warmup: daily cap minus sends", SelAllowance(&r, &f), 40);
	r.hold = true;
	check("allowance: big held out during the warmup", SelAllowance(&r, &f), 0);
	f = bucket("consumer", 0);
	f.has_override = true;
	f.override_cap = 30;
	check("allowance: consumer held out even with an override", SelAllowance(&r, &f), 0);
	f = bucket(NULL, 0);
	check("allowance: the default class is not held out", SelAllowance(&r, &f), 60);
	f = bucket(NULL, 1000);
	f.untagged = true;
	check("allowance: the untagged bucket gets null_run_cap, whatever was sent",
		  SelAllowance(&r, &f), 40);
	r.hold = false;
	f = bucket("consumer", 0);
	f.has_override = true;
	f.override_cap = 30;
	check("allowance: an override lets a class without a ramp row in", SelAllowance(&r, &f), 30);
}

/* The brake: a pause wins over everything, a slowdown scales every cap. */
static void
test_brake(void)
{
	SelAllowanceRules r = rules_after_warmup();
	SelBucketFacts f = bucket(NULL, 0);

	f.brake = SEL_BRAKE_PAUSED;
	check("brake: a paused operator gets 0", SelAllowance(&r, &f), 0);
	f.untagged = true;
	check("brake: a paused untagged bucket gets 0", SelAllowance(&r, &f), 0);
	f.brake = SEL_BRAKE_SLOWED;
	check("brake: a slowed untagged bucket gets null_run_cap x factor", SelAllowance(&r, &f), 20);
	f = bucket(NULL, 0);
	f.brake = SEL_BRAKE_SLOWED;
	check("brake: slowed: run cap 60 x 0.5", SelAllowance(&r, &f), 30);
	f.sent_today = 35;
	check("brake: slowed: daily cap 80 x 0.5 minus 35 sent", SelAllowance(&r, &f), 5);
	f.sent_today = 48;
	check("brake: slowed: over the halved daily cap gets 0", SelAllowance(&r, &f), 0);
	r.per_op_run_cap = 25;
	f = bucket(NULL, 0);
	f.brake = SEL_BRAKE_SLOWED;
	check("brake: slowed caps are rounded down (25 x 0.5)", SelAllowance(&r, &f), 12);
	check("brake: SelBrakeCap leaves an unbraked cap alone",
		  SelBrakeCap(&r, SEL_BRAKE_NONE, 11), 11);
	r.brake_slow_factor = 0;
	check("brake: a slow factor of 0 stops a slowed operator", SelAllowance(&r, &f), 0);
}

/* Brake actions are read and written as pw.brake_status() has them. */
static void
test_brake_names(void)
{
	SelBrakeAction a = SEL_BRAKE_PAUSED;

	check("brake names: NULL is none", SelBrakeActionParse(NULL, &a) && a == SEL_BRAKE_NONE, 1);
	check("brake names: paused", SelBrakeActionParse("paused", &a) && a == SEL_BRAKE_PAUSED, 1);
	check("brake names: slowed", SelBrakeActionParse("slowed", &a) && a == SEL_BRAKE_SLOWED, 1);
	check("brake names: an unknown action is refused", SelBrakeActionParse("stopped", &a), 0);
	check("brake names: round trip of paused",
		  strcmp(SelBrakeActionName(SEL_BRAKE_PAUSED), "paused") == 0, 1);
	check("brake names: round trip of slowed",
		  strcmp(SelBrakeActionName(SEL_BRAKE_SLOWED), "slowed") == 0, 1);
	check("brake names: none has no name", SelBrakeActionName(SEL_BRAKE_NONE) == NULL, 1);
	check("held classes: big and consumer only",
		  SelHeldClass("big") && SelHeldClass("consumer") && !SelHeldClass("default") &&
		  !SelHeldClass(NULL), 1);
}

int
main(void)
{
	test_daily_cap();
	test_allowance();
	test_brake();
	test_brake_names();
	printf("1..%d\n", ntests);
	if (nfailed > 0)
		fprintf(stderr, "test_allowance: %d of %d failed\n", nfailed, ntests);
	return nfailed > 0 ? 1 : 0;
}
