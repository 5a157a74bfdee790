//! STS (Version 2011-06-15, SigV4 service `sts`) as far as tools ask it
//! before anything else: `GetCallerIdentity`, which the aws CLI, Terraform's
//! provider and Ansible's modules call to learn the account they act in.
//! Every other STS action is refused with STS's `InvalidAction`; openvpc
//! issues no temporary credentials.
//!
//! This module only renders answers in STS's Query-protocol shapes; the
//! server authenticates the request and says who the caller is.

use crate::api::account::Account;
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::xml::Xml;

/// The namespace of every STS response and error.
pub const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The STS API version this module speaks.
const VERSION: &str = "2011-06-15";

/// Who a caller is, as `GetCallerIdentity` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub account: String,
    pub arn: String,
    pub user_id: String,
}

impl Identity {
    /// The account's own keys: its root user. AWS names the root user
    /// `arn:aws:iam::ACCOUNT:root` and gives the account ID as its user ID.
    pub fn root(account: &Account) -> Self {
        Identity {
            account: account.id.clone(),
            arn: format!("arn:aws:iam::{}:root", account.id),
            user_id: account.id.clone(),
        }
    }
}

/// Runs an STS action for `caller`; errors come in STS's error shape.
pub fn dispatch(caller: &Identity, params: &Params, request_id: &str) -> Result<String, ApiError> {
    answer(caller, params, request_id).map_err(|e| e.in_query_shape(NAMESPACE))
}

fn answer(caller: &Identity, params: &Params, request_id: &str) -> Result<String, ApiError> {
    let Some(action) = params.get("Action") else {
        return Err(ApiError::new(
            "MissingAction",
            "The request must contain the parameter Action.",
        ));
    };
    if action != "GetCallerIdentity" {
        // STS's own wording for an action it does not know, then what
        // openvpc does offer.
        return Err(ApiError::new(
            "InvalidAction",
            format!(
                "Could not find operation {action} for version {VERSION}: openvpc's STS answers GetCallerIdentity only."
            ),
        ));
    }
    Ok(Xml::query_response(
        "GetCallerIdentity",
        NAMESPACE,
        request_id,
        |x| {
            x.elem("UserId", &caller.user_id)
                .elem("Account", &caller.account)
                .elem("Arn", &caller.arn);
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(body: &str) -> Params {
        Params::parse(body.as_bytes(), "")
    }

    // Issue 12: the account's own keys are its root user; UserId is the
    // account ID, as AWS answers for root credentials.
    #[test]
    fn get_caller_identity_names_the_root_user() {
        let account = Account::generate("alice", Some("210987654321"));
        let xml = dispatch(
            &Identity::root(&account),
            &params("Action=GetCallerIdentity&Version=2011-06-15"),
            "req-1",
        )
        .unwrap();
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <GetCallerIdentityResult><UserId>210987654321</UserId><Account>210987654321</Account>\
             <Arn>arn:aws:iam::210987654321:root</Arn></GetCallerIdentityResult>\
             <ResponseMetadata><RequestId>req-1</RequestId></ResponseMetadata>\
             </GetCallerIdentityResponse>"
        );
    }

    // Other STS actions: InvalidAction in STS's `<ErrorResponse>` shape.
    #[test]
    fn other_actions_are_invalid_in_sts_error_shape() {
        let caller = Identity::root(&Account::generate("a", Some("111111111111")));
        let e = dispatch(&caller, &params("Action=AssumeRole"), "r").unwrap_err();
        assert_eq!((e.code.as_ref(), e.status), ("InvalidAction", 400));
        assert!(
            e.to_xml("r").contains(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>InvalidAction</Code>"
            ),
            "{}",
            e.to_xml("r")
        );
        let e = dispatch(&caller, &params("Version=2011-06-15"), "r").unwrap_err();
        assert_eq!(e.code, "MissingAction");
    }
}
