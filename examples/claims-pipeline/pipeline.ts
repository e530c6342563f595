/**
 * The seed's claim flow: intake → eligibility → adjudication → payment, each side-effecting
 * step guarded by a key derived from business identifiers plus a content hash.
 */
import { createHash } from 'node:crypto';
import type { Idem } from 'idem';
import type { Claim, World } from './services.ts';

const RULESET_VERSION = '2026.11';

export async function processClaim(idem: Idem, world: World, claim: Claim, crashAfterPayment: () => void) {
  const fileDigest = createHash('sha256').update(JSON.stringify(claim)).digest('hex').slice(0, 16);

  // idemp:intake:{payer_id}:{claim_number}:{file_digest}
  const intake = await idem.run(idem.key('intake', claim.payerId, claim.claimNumber, fileDigest), () => ({
    claimIntakeId: `CI-${claim.claimNumber}`,
    memberId: claim.memberId,
    planId: claim.planId,
    dos: claim.dos,
    billed: claim.lines.reduce((sum, l) => sum + l.billed, 0),
  }));

  // idemp:elig:{member_id}:{plan_id}:{dos}
  const eligibility = await idem.run(idem.key('elig', intake.memberId, intake.planId, intake.dos), () =>
    world.checkEligibility(claim),
  );

  // idemp:adj:{claim_intake_id}:{ruleset_version}
  const adjudication = await idem.run(idem.key('adj', intake.claimIntakeId, RULESET_VERSION), () => {
    const totalAllowed = Math.round(intake.billed * 0.8 * 100) / 100;
    const memberResponsibility = Math.round(totalAllowed * eligibility.coinsurance * 100) / 100;
    return { adjudicationId: `ADJ-${claim.claimNumber}`, totalAllowed, memberResponsibility };
  });

  // idemp:pay:{claim_intake_id}:{total_allowed}:{member_responsibility}
  const payKey = idem.key(
    'pay',
    intake.claimIntakeId,
    adjudication.totalAllowed,
    adjudication.memberResponsibility,
  );
  return idem.run(payKey, (ctx) => {
    const amount = Math.round((adjudication.totalAllowed - adjudication.memberResponsibility) * 100) / 100;
    // ctx.downstreamKey is the same on every attempt, so the gateway dedups a retry after a crash.
    const payment = world.postPayment(claim.claimNumber, amount, ctx.downstreamKey);
    crashAfterPayment(); // chaos: the worker may die here, after paying, before idem stores the outcome
    return { ...payment, attempt: ctx.attempt, mayHaveRun: ctx.mayHaveRun };
  });
}
