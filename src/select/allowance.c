/*-------------------------------------------------------------------------
 *
 * allowance.c
 *	  The allowance policy of the selection (see allowance.h): plain C, no
 *	  PostgreSQL dependency.
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "select/allowance.h"

/* Whether a class is held out entirely during the warmup. */
bool
SelHeldClass(const char *op_class)
{
	return op_class != NULL &&
		(strcmp(op_class, "big") == 0 || strcmp(op_class, "consumer") == 0);
}

/* A cap times the slow factor (rounded down) when the brake slows the bucket. */
int64_t
SelBrakeCap(const SelAllowanceRules *rules, SelBrakeAction brake, int64_t cap)
{
	if (brake != SEL_BRAKE_SLOWED)
		return cap;
	return (int64_t) floor((double) cap * rules->brake_slow_factor);
}

/*
 * The daily cap of an operator: its override, else its class's cap (the
 * caps of pw.daily_caps(), which has a row for every class; a class without
 * one gets 0).
 */
int64_t
SelDailyCap(const SelAllowanceRules *rules, const SelBucketFacts *facts)
{
	const char *cls = facts->op_class ? facts->op_class : "default";

	if (facts->has_override)
		return facts->override_cap;
	for (int i = 0; i < rules->nclass_caps; i++)
		if (strcmp(rules->class_caps[i].op_class, cls) == 0)
			return rules->class_caps[i].daily_cap;
	return 0;
}

/*
 * What a bucket may take in this run: 0 when the brake pauses it; the
 * untagged bucket null_run_cap; an operator min(per_op_run_cap, its daily
 * cap minus today's sends), 0 while its class is held out.  The brake's
 * slowdown multiplies the daily cap and the run caps.
 */
int64_t
SelAllowance(const SelAllowanceRules *rules, const SelBucketFacts *facts)
{
	int64_t		left;
	int64_t		run_cap;

	if (facts->brake == SEL_BRAKE_PAUSED)
		return 0;
	if (facts->untagged)
		return SelBrakeCap(rules, facts->brake, rules->null_run_cap);
	if (rules->hold && SelHeldClass(facts->op_class ? facts->op_class : "default"))
		return 0;
	left = SelBrakeCap(rules, facts->brake, SelDailyCap(rules, facts)) - facts->sent_today;
	if (left < 0)
		left = 0;
	run_cap = SelBrakeCap(rules, facts->brake, rules->per_op_run_cap);
	return left < run_cap ? left : run_cap;
}

/* Reads a brake action as pw.brake_status() writes it; false if unknown. */
bool
SelBrakeActionParse(const char *action, SelBrakeAction *brake)
{
	if (action == NULL)
		*brake = SEL_BRAKE_NONE;
	else if (strcmp(action, "paused") == 0)
		*brake = SEL_BRAKE_PAUSED;
	else if (strcmp(action, "slowed") == 0)
		*brake = SEL_BRAKE_SLOWED;
	else
		return false;
	return true;
}

/* The action's name as pw.brake_status() writes it (NULL for none). */
const char *
SelBrakeActionName(SelBrakeAction brake)
{
	switch (brake)
	{
		case SEL_BRAKE_PAUSED:
			return "paused";
		case SEL_BRAKE_SLOWED:
			return "slowed";
		case SEL_BRAKE_NONE:
			break;
	}
	return NULL;
}
