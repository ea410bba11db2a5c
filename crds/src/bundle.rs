//! TODO(issue 4): the policy bundle the operator writes and the sidecar reads.
