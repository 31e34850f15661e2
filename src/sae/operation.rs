//! The five SAE operations sae-controller uses, and the one place their action name, HTTP method
//! and ROA path are spelled. The client sends them, the simulator routes by them and the metrics
//! label requests with their names, so a typo cannot make the three disagree.
//!
//! Plain data only: no HTTP library, no Kubernetes or Prometheus types.

/// One SAE API operation (an "action" in Alibaba Cloud's terms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    DeleteInstances,
    DescribeChangeOrder,
    ListChangeOrders,
    DescribeApplicationGroups,
    DescribeApplicationInstances,
}

impl Operation {
    /// Every operation, in a fixed order.
    pub const ALL: [Operation; 5] = [
        Operation::DeleteInstances,
        Operation::DescribeChangeOrder,
        Operation::ListChangeOrders,
        Operation::DescribeApplicationGroups,
        Operation::DescribeApplicationInstances,
    ];

    /// The action name: what goes into `x-acs-action`, error messages and metric labels.
    pub const fn name(self) -> &'static str {
        match self {
            Operation::DeleteInstances => "DeleteInstances",
            Operation::DescribeChangeOrder => "DescribeChangeOrder",
            Operation::ListChangeOrders => "ListChangeOrders",
            Operation::DescribeApplicationGroups => "DescribeApplicationGroups",
            Operation::DescribeApplicationInstances => "DescribeApplicationInstances",
        }
    }

    /// The HTTP method SAE serves it with; only the one write is a PUT.
    pub const fn method(self) -> &'static str {
        match self {
            Operation::DeleteInstances => "PUT",
            _ => "GET",
        }
    }

    /// Whether sending it twice does no harm: true for the reads, false for DeleteInstances
    /// (SAE takes no client token for it).
    pub const fn is_idempotent(self) -> bool {
        match self {
            Operation::DeleteInstances => false,
            Operation::DescribeChangeOrder
            | Operation::ListChangeOrders
            | Operation::DescribeApplicationGroups
            | Operation::DescribeApplicationInstances => true,
        }
    }

    /// The ROA path, without query.
    pub const fn path(self) -> &'static str {
        match self {
            Operation::DeleteInstances => "/pop/v1/sam/app/deleteInstances",
            Operation::DescribeChangeOrder => "/pop/v1/sam/changeorder/DescribeChangeOrder",
            Operation::ListChangeOrders => "/pop/v1/sam/changeorder/ListChangeOrders",
            Operation::DescribeApplicationGroups => "/pop/v1/sam/app/describeApplicationGroups",
            Operation::DescribeApplicationInstances => {
                "/pop/v1/sam/app/describeApplicationInstances"
            }
        }
    }

    /// The operation whose action name is `name`, exactly.
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.name() == name)
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths_are_unique_and_round_trip() {
        for op in Operation::ALL {
            assert_eq!(Operation::from_name(op.name()), Some(op));
            let same_path = Operation::ALL.iter().filter(|o| o.path() == op.path());
            assert_eq!(same_path.count(), 1, "{op}");
        }
        assert_eq!(Operation::from_name("ListInstances"), None);
    }
}
