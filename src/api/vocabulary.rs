//! The words Aviary writes for people and tools to read: condition types, condition statuses and
//! event reasons. Every one is a variant here, so a reason cannot be misspelt in one place and a
//! dashboard or alert rule can rely on the whole list.

/// Declares a fieldless enum whose wire form is each variant's name.
macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($(#[$doc:meta])* $variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$doc])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant)),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, so `{:<18}` lines reasons up as it would a string.
                f.pad(self.as_str())
            }
        }
    };
}

words! {
    /// The `type` of a condition in `status.conditions`.
    ConditionType {
        /// Whether the target's revision is the one the primary serves (Flagger's condition).
        Promoted,
        /// kstatus's summary: True when the last rollout is done and promoted (or nothing has
        /// changed yet), False while one runs, after a rollback, or when the canary cannot run.
        Ready,
        /// kstatus: present and True while a rollout or its stored intent is being carried out.
        Reconciling,
        /// kstatus: present and True when the canary will not progress without a change: the
        /// rollout failed, or the spec or target is wrong.
        Stalled,
        /// The `requireMTLS` preflight that let the rollout start.
        MTLS,
    }
}

words! {
    /// The `status` of a condition, as Kubernetes spells it.
    ConditionStatus { True, False, Unknown }
}

words! {
    /// The reason of a Kubernetes Event, a notification or a condition.
    Reason {
        // The rollout's own steps.
        Initialized,
        InitializationFailed,
        RevisionUnchanged,
        Waiting,
        NewRevision,
        AnalysisStarted,
        AnalysisRestarted,
        AnalysisHeld,
        CheckFailed,
        IterationPassed,
        WeightAdvanced,
        TrafficIncreaseWaiting,
        WaitingPromotion,
        Promoting,
        PromotionFailed,
        RoutedToPrimary,
        Succeeded,
        RolledBack,
        Reverted,
        RoutesResumed,
        // Operator requests.
        Paused,
        Resumed,
        ResumeIgnored,
        Retrying,
        GateApproved,
        PromotionApproved,
        PromotedByOperator,
        RequestIgnored,
        // Why a canary cannot run.
        ReconcileFailed,
        InvalidSpec,
        InvalidMetric,
        TargetClaimed,
        TargetNotFound,
        TargetSelectorMissing,
        // The mTLS preflight.
        MTLSStrict,
        MTLSNotStrict,
        Meshed,
        NotMeshed,
        // The loadtester's gates.
        GateOpened,
        GateClosed,
        RollbackOpened,
        RollbackClosed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_its_own_camel_case_word() {
        let mut seen = std::collections::BTreeSet::new();
        for reason in Reason::ALL {
            let text = reason.as_str();
            assert!(
                text.chars().next().is_some_and(char::is_uppercase),
                "{text}"
            );
            assert!(text.chars().all(char::is_alphanumeric), "{text}");
            assert!(seen.insert(text), "{text} twice");
        }
        assert_eq!(ConditionStatus::True.to_string(), "True");
        assert_eq!(format!("{:<9}|", Reason::Paused), "Paused   |");
    }
}
