//! The conditions GitOps tools read to tell whether an apply has settled: kstatus's `Ready`,
//! `Reconciling` and `Stalled` (Flux's `wait: true`, `kubectl wait --for=condition=Ready`, Argo
//! CD through `argocd/health.lua`). kstatus reads `Reconciling` and `Stalled` as
//! "abnormal-true" conditions, present only while true; `Ready` is always present. With
//! `observedGeneration` they say: in progress, done, or failed.

use jiff::Timestamp;

use super::{CanaryCondition, CanaryPhase, CanaryStatus, ConditionStatus, ConditionType};

/// Where a canary stands, as kstatus sums it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Nothing is left to do: the revision in the target is the one the primary serves.
    Current,
    /// A rollout, its gate or its stored intent is under way.
    InProgress,
    /// Nothing will happen until someone changes the target or the Canary.
    Failed,
}

impl CanaryPhase {
    pub fn standing(self) -> Standing {
        match self {
            CanaryPhase::Initialized | CanaryPhase::Succeeded | CanaryPhase::Terminated => {
                Standing::Current
            }
            CanaryPhase::Failed => Standing::Failed,
            CanaryPhase::Initializing
            | CanaryPhase::Waiting
            | CanaryPhase::Progressing
            | CanaryPhase::WaitingPromotion
            | CanaryPhase::Promoting
            | CanaryPhase::Finalising
            | CanaryPhase::Terminating => Standing::InProgress,
        }
    }
}

impl CanaryStatus {
    /// Sets `Ready`, `Reconciling` and `Stalled` to agree with the phase; a stored intent whose
    /// effects may not all be made yet is in progress whatever its phase.
    pub fn set_standing(&mut self, now: Timestamp) {
        let standing = match self.effects_pending {
            true => Standing::InProgress,
            false => self.phase.standing(),
        };
        let reason = self.phase.as_str();
        let message = match standing {
            Standing::Current => "the primary serves the target's revision",
            Standing::InProgress if self.effects_pending => "a transition is being carried out",
            Standing::InProgress => "a rollout is under way",
            Standing::Failed => "the rollout failed and was rolled back",
        };
        let said = (reason, message);
        self.put(
            ConditionType::Ready,
            standing == Standing::Current,
            said,
            now,
        );
        self.abnormal(
            ConditionType::Reconciling,
            standing == Standing::InProgress,
            said,
            now,
        );
        self.abnormal(
            ConditionType::Stalled,
            standing == Standing::Failed,
            said,
            now,
        );
    }

    /// A canary that cannot run (its `Ready` is already False with the reason): stalled unless
    /// what it waits for may turn up by itself, as a target applied just after its Canary does.
    pub fn set_blocked_standing(
        &mut self,
        (reason, message): (&str, &str),
        stalled: bool,
        now: Timestamp,
    ) {
        let said = (reason, message);
        self.abnormal(ConditionType::Reconciling, !stalled, said, now);
        self.abnormal(ConditionType::Stalled, stalled, said, now);
    }

    /// Present only while true.
    fn abnormal(
        &mut self,
        kind: ConditionType,
        true_now: bool,
        said: (&str, &str),
        now: Timestamp,
    ) {
        if true_now {
            self.put(kind, true, said, now);
        } else {
            self.clear_condition(kind);
        }
    }

    /// Sets a condition, touching its times only when something about it changed, so a
    /// reconcile that changes nothing writes nothing.
    fn put(
        &mut self,
        kind: ConditionType,
        value: bool,
        (reason, message): (&str, &str),
        now: Timestamp,
    ) {
        let status = match value {
            true => ConditionStatus::True,
            false => ConditionStatus::False,
        };
        let updated = CanaryCondition {
            r#type: kind.as_str().into(),
            status: status.as_str().into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_update_time: Some(now),
            last_transition_time: Some(now),
        };
        match self
            .conditions
            .iter_mut()
            .find(|c| c.r#type == kind.as_str())
        {
            None => self.conditions.push(updated),
            Some(existing) if existing.status != updated.status => *existing = updated,
            Some(existing) => {
                if existing.reason != updated.reason || existing.message != updated.message {
                    existing.reason = updated.reason;
                    existing.message = updated.message;
                    existing.last_update_time = Some(now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conditions(status: &CanaryStatus) -> Vec<(String, String)> {
        let mut found: Vec<_> = (status.conditions.iter())
            .filter(|c| c.r#type != "Promoted")
            .map(|c| (c.r#type.clone(), c.status.clone()))
            .collect();
        found.sort();
        found
    }

    fn standing_of(phase: CanaryPhase, effects_pending: bool) -> Vec<(String, String)> {
        let mut status = CanaryStatus {
            phase,
            effects_pending,
            ..CanaryStatus::default()
        };
        status.set_standing(Timestamp::UNIX_EPOCH);
        conditions(&status)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn each_phase_reads_as_kstatus_expects() {
        let current = pairs(&[("Ready", "True")]);
        let progressing = pairs(&[("Ready", "False"), ("Reconciling", "True")]);
        let failed = pairs(&[("Ready", "False"), ("Stalled", "True")]);
        assert_eq!(standing_of(CanaryPhase::Succeeded, false), current);
        assert_eq!(standing_of(CanaryPhase::Initialized, false), current);
        assert_eq!(standing_of(CanaryPhase::Progressing, false), progressing);
        assert_eq!(standing_of(CanaryPhase::Waiting, false), progressing);
        assert_eq!(standing_of(CanaryPhase::Failed, false), failed);
        // A stored rollback not yet carried out is still in progress.
        assert_eq!(standing_of(CanaryPhase::Failed, true), progressing);
    }

    #[test]
    fn an_unchanged_standing_keeps_its_times() {
        let mut status = CanaryStatus {
            phase: CanaryPhase::Progressing,
            ..CanaryStatus::default()
        };
        status.set_standing(Timestamp::UNIX_EPOCH);
        let before = status.clone();
        status.set_standing(Timestamp::now());
        assert_eq!(status, before);
        status.phase = CanaryPhase::Succeeded;
        status.set_standing(Timestamp::now());
        assert!(status.condition(ConditionType::Reconciling).is_none());
        let ready = status.condition(ConditionType::Ready).unwrap();
        assert_ne!(ready.last_transition_time, Some(Timestamp::UNIX_EPOCH));
    }
}
