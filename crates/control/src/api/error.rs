//! API errors as EC2 reports them: a code, a message that says what to do,
//! and an HTTP status, rendered in EC2's own error shape (spec 12.2: root
//! `<Response>`, `<RequestID>` with a capital ID), or in the standard Query
//! protocol's `<ErrorResponse>` for ELBv2 (spec 12.5).

use std::borrow::Cow;

use crate::api::xml::escape;

/// One API error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: Cow<'static, str>,
    pub message: String,
    pub status: u16,
    /// Which service's error body to render: EC2's own, or the standard
    /// Query protocol's `<ErrorResponse>` (ELBv2) in that namespace.
    pub shape: ErrorShape,
}

/// The error body a service's clients parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorShape {
    /// EC2's `<Response><Errors><Error>` with `<RequestID>`.
    #[default]
    Ec2,
    /// The standard Query protocol's `<ErrorResponse xmlns=…>` with a
    /// `<Type>` and `<RequestId>`, in this namespace (ELBv2).
    Query(&'static str),
}

impl ApiError {
    /// A client error (HTTP 400) with this code.
    pub fn new(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        ApiError {
            code: code.into(),
            message: message.into(),
            status: 400,
            shape: ErrorShape::Ec2,
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            "MissingParameter",
            format!("The request must contain the parameter {name}"),
        )
    }

    pub fn invalid_value(name: &str, value: &str, why: &str) -> Self {
        Self::new(
            "InvalidParameterValue",
            format!("Value ({value}) for parameter {name} is invalid. {why}"),
        )
    }

    /// spec 12.1: an authorised DryRun answers with this error and HTTP 412.
    pub fn dry_run() -> Self {
        Self::new(
            "DryRunOperation",
            "Request would have succeeded, but DryRun flag is set.",
        )
        .with_status(412)
    }

    pub fn invalid_action(action: &str) -> Self {
        Self::new(
            "InvalidAction",
            format!("The action {action} is not valid for this web service."),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("InternalError", message).with_status(500)
    }

    /// The same error rendered in the standard Query protocol's shape.
    pub fn in_query_shape(mut self, namespace: &'static str) -> Self {
        self.shape = ErrorShape::Query(namespace);
        self
    }

    /// The error body the service sends.
    pub fn to_xml(&self, request_id: &str) -> String {
        if let ErrorShape::Query(namespace) = self.shape {
            // Query-protocol clients read `Type` to tell the caller's faults
            // from the service's.
            let kind = if self.status >= 500 {
                "Receiver"
            } else {
                "Sender"
            };
            return format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{namespace}\"><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
                escape(&self.code),
                escape(&self.message),
                escape(request_id)
            );
        }
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
            escape(&self.code),
            escape(&self.message),
            escape(request_id)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_ec2_error_shape() {
        let e = ApiError::new(
            "InvalidVpcID.NotFound",
            "The vpc ID 'vpc-1<2>' does not exist",
        );
        assert_eq!(
            e.to_xml("req-1"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>InvalidVpcID.NotFound</Code><Message>The vpc ID &apos;vpc-1&lt;2&gt;&apos; does not exist</Message></Error></Errors><RequestID>req-1</RequestID></Response>"
        );
        assert_eq!(ApiError::dry_run().status, 412);
    }

    #[test]
    fn renders_query_protocol_error_shape() {
        // spec 12.5 (NLB): `<ErrorResponse><Error><Type>Sender</Type>…`.
        let e = ApiError::new("LoadBalancerNotFound", "gone").in_query_shape("urn:x");
        assert_eq!(
            e.to_xml("req-1"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"urn:x\"><Error><Type>Sender</Type><Code>LoadBalancerNotFound</Code><Message>gone</Message></Error><RequestId>req-1</RequestId></ErrorResponse>"
        );
    }
}
