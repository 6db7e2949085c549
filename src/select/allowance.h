/*-------------------------------------------------------------------------
 *
 * allowance.h
 *	  The allowance policy of the selection in plain C, with no PostgreSQL
 *	  dependency (so that a unit test can drive it on its own).
 *
 *	  A bucket (an operator label, or the untagged carriers) may take, in
 *	  one run, what its daily cap on the warmup day leaves after today's
 *	  sends, at most the profile's per-operator run cap; the untagged bucket
 *	  gets null_run_cap.  Big and consumer operators are held out during the
 *	  warmup.  The reputation brake pauses a bucket (allowance 0) or slows it
 *	  (daily and run caps times brake_slow_factor, rounded down).
 *
 *-------------------------------------------------------------------------
 */
#ifndef SEL_ALLOWANCE_H
#define SEL_ALLOWANCE_H

#include <stdbool.h>
#include <stdint.h>

/* What the reputation brake does to a bucket (pw.brake_status().action). */
typedef enum SelBrakeAction
{
	SEL_BRAKE_NONE = 0,
	SEL_BRAKE_SLOWED,
	SEL_BRAKE_PAUSED
} SelBrakeAction;

/* The daily cap of an operator class on the warmup day (pw.daily_caps()). */
typedef struct SelClassCap
{
	const char *op_class;
	int64_t		daily_cap;
} SelClassCap;

/* A profile's rules for one run. */
typedef struct SelAllowanceRules
{
	bool		hold;			/* big and consumer held out (warmup) */
	int64_t		per_op_run_cap;
	int64_t		null_run_cap;
	double		brake_slow_factor;
	int			nclass_caps;
	const SelClassCap *class_caps;	/* one entry per class */
} SelAllowanceRules;

/* What is known of one bucket. */
typedef struct SelBucketFacts
{
	bool		untagged;		/* the bucket of carriers without a label */
	const char *op_class;		/* class from pw.operators; NULL: default */
	bool		has_override;	/* a pw.operator_ramp row applies */
	int64_t		override_cap;
	int64_t		sent_today;
	SelBrakeAction brake;
} SelBucketFacts;

extern bool SelHeldClass(const char *op_class);
extern int64_t SelBrakeCap(const SelAllowanceRules *rules, SelBrakeAction brake,
						   int64_t cap);
extern int64_t SelDailyCap(const SelAllowanceRules *rules, const SelBucketFacts *facts);
extern int64_t SelAllowance(const SelAllowanceRules *rules, const SelBucketFacts *facts);
extern bool SelBrakeActionParse(const char *action, SelBrakeAction *brake);
extern const char *SelBrakeActionName(SelBrakeAction brake);

#endif							/* SEL_ALLOWANCE_H */
