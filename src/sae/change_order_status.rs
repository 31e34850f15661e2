//! SAE's change-order statuses: the numbers DescribeChangeOrder and ListChangeOrders return in
//! `Status`, named once here. The decisions read them only through this type; the names are what
//! `status.changeOrderStatus` shows.
//!
//! The simulator keeps its own numbers on purpose: it stands in for SAE and must not agree with the
//! controller by sharing the controller's table.

/// A change order's status, as SAE numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeOrderStatus {
    /// 0: created, not started (it may stay here a while).
    Preparing,
    /// 1: running (sub-status 1: running with an exception).
    Executing,
    /// 2: done.
    Succeeded,
    /// 3: failed; SAE puts the instances back.
    Failed,
    /// 6: stopped by someone; SAE puts the instances back.
    Terminated,
    /// 8: between batches, waiting for a person to release the next.
    WaitingManualRelease,
    /// 9: between batches, releasing the next by itself.
    WaitingAutoRelease,
    /// 10: failed inside SAE; SAE puts the instances back.
    SystemFailure,
    /// 11: waiting for approval.
    PendingApproval,
    /// 12: approved, about to run.
    Approved,
    /// A number SAE's documentation does not list.
    Unknown(i64),
}

impl ChangeOrderStatus {
    /// Every status SAE documents, in the order of its numbers.
    pub const DOCUMENTED: [ChangeOrderStatus; 10] = [
        Self::Preparing,
        Self::Executing,
        Self::Succeeded,
        Self::Failed,
        Self::Terminated,
        Self::WaitingManualRelease,
        Self::WaitingAutoRelease,
        Self::SystemFailure,
        Self::PendingApproval,
        Self::Approved,
    ];

    /// The status SAE means by `code`.
    pub fn from_code(code: i64) -> Self {
        Self::DOCUMENTED
            .into_iter()
            .find(|s| s.code() == code)
            .unwrap_or(Self::Unknown(code))
    }

    /// SAE's number for this status.
    pub fn code(self) -> i64 {
        match self {
            Self::Preparing => 0,
            Self::Executing => 1,
            Self::Succeeded => 2,
            Self::Failed => 3,
            Self::Terminated => 6,
            Self::WaitingManualRelease => 8,
            Self::WaitingAutoRelease => 9,
            Self::SystemFailure => 10,
            Self::PendingApproval => 11,
            Self::Approved => 12,
            Self::Unknown(code) => code,
        }
    }

    /// The name `status.changeOrderStatus` shows (`Unknown(<n>)` for an undocumented number).
    pub fn name(self) -> String {
        let name = match self {
            Self::Preparing => "Preparing",
            Self::Executing => "Executing",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Terminated => "Terminated",
            Self::WaitingManualRelease => "WaitingManualRelease",
            Self::WaitingAutoRelease => "WaitingAutoRelease",
            Self::SystemFailure => "SystemFailure",
            Self::PendingApproval => "PendingApproval",
            Self::Approved => "Approved",
            Self::Unknown(code) => return format!("Unknown({code})"),
        };
        name.to_string()
    }

    /// Whether the change order ended without deleting (Failed, Terminated, SystemFailure): the
    /// instances are back, so a second DeleteInstances would be accepted.
    pub fn ended_without_deleting(self) -> bool {
        matches!(self, Self::Failed | Self::Terminated | Self::SystemFailure)
    }

    /// Whether the change order will not change any more.
    pub fn is_final(self) -> bool {
        self == Self::Succeeded || self.ended_without_deleting()
    }

    /// Whether nothing has been done yet or it is running: states InProgress already covers.
    pub fn is_preparing_or_executing(self) -> bool {
        matches!(self, Self::Preparing | Self::Executing)
    }
}

#[cfg(test)]
mod tests {
    use super::ChangeOrderStatus;

    #[test]
    fn every_number_sae_documents_has_its_name_and_others_say_unknown() {
        let table = [
            (0, "Preparing"),
            (1, "Executing"),
            (2, "Succeeded"),
            (3, "Failed"),
            (6, "Terminated"),
            (8, "WaitingManualRelease"),
            (9, "WaitingAutoRelease"),
            (10, "SystemFailure"),
            (11, "PendingApproval"),
            (12, "Approved"),
            (4, "Unknown(4)"),
            (-1, "Unknown(-1)"),
        ];
        for (code, name) in table {
            let status = ChangeOrderStatus::from_code(code);
            assert_eq!(status.name(), name);
            assert_eq!(status.code(), code);
        }
    }

    #[test]
    fn only_succeeded_and_the_three_failures_are_final() {
        let finals: Vec<i64> = (-1..=13)
            .map(ChangeOrderStatus::from_code)
            .filter(|s| s.is_final())
            .map(ChangeOrderStatus::code)
            .collect();
        assert_eq!(finals, [2, 3, 6, 10]);
    }
}
