//! Everything `openvpc server --moto-compat` changes, so that moto's published
//! test suite (`scripts/moto-suite`) can run against openvpc in moto's server
//! mode. It is for that suite only, never for a server anyone else can reach.
//!
//! This module is the only code that asks whether the mode is on: `server`
//! reads [`Mode::of`] and calls its hooks at fixed points of the request
//! path, and each hook is a no-op in [`Mode::Production`]. Under the flag:
//!
//! 1. **Signatures are not verified, and every request acts as one fixed
//!    account** ([`Mode::fixed_account`]): moto's `123456789012`
//!    ([`ACCOUNT_ID`]), created at start with fresh, unused keys if the store
//!    lacks it ([`setup`]). A signature is still read for its form: its
//!    credential scope names the region and the service, and a service this
//!    endpoint does not serve is still refused.
//! 2. **`POST /moto-api/reset`** deletes every resource of every account, the
//!    region counters and the names below (everything under
//!    `actions::STATE_PREFIXES`); accounts and keys stay. Anything but a
//!    POST gets moto's 400 ([`reset()`]). Without the flag the path is a 404.
//! 3. **STS `GetCallerIdentity`** names moto's IAM user
//!    (`arn:aws:iam::123456789012:user/moto`, the access key as user ID), as
//!    moto's `account_id` fixture expects, instead of the account's root
//!    ([`Mode::caller`]).
//! 4. **Other services' calls on the same endpoint** ([`Mode::foreign`],
//!    see `foreign`): S3 CreateBucket and CloudWatch Logs CreateLogGroup
//!    record the name under `compat/`; SSM GetParameter resolves AWS's
//!    public AMI aliases to a made-up, stable image ID; any other S3 call, or
//!    call with an `X-Amz-Target`, gets an `InvalidAction` JSON error. S3's
//!    path-style calls land on paths other than `/`, so every path is routed
//!    to the API ([`Mode::routes`]); without the flag only `/` is.
//! 5. **CreateFlowLogs checks its destination** ([`Mode::ec2_action`]): an
//!    S3 bucket that was never created fails each resource with `400`
//!    `LogDestination: BUCKET does not exist.`, and a log group that was
//!    never created gives a flow log whose delivery status is `FAILED`
//!    (`Access error`), as EC2 and moto answer.
//!
//! 6. **Internet gateways forward without an edge** ([`internet_policy`],
//!    stored in the region's settings at start): routes to an attached
//!    internet gateway show `active` and Elastic IPs associate in VPCs
//!    without one, as moto models them; production shows the truth
//!    (`blackhole` while no edge node serves the region, and
//!    `Gateway.NotAttached`).
//!
//! ## Why CreateFlowLogs checks the destination only here
//!
//! The difference stays, on purpose. Whether a bucket or log group exists is
//! another service's to know (`actions::flow_log::Destinations`), and in
//! production openvpc serves no S3 and no CloudWatch Logs: there is nothing
//! to check against, and no way for a user to create a destination openvpc
//! could then find. Flow-log records are delivered by openvpc itself, to
//! files in the S3 layout under the data directory (DESIGN.md), where a
//! bucket is a directory made on first write, so no destination can be
//! missing; production therefore accepts every one (`flow_log::Unchecked`).
//! moto's tests, by contrast, create the bucket or log group through S3 or
//! Logs on this same endpoint and then assert that a missing one is refused
//! (`test_create_flow_logs_unsuccessful`), so this mode records the names it
//! is asked to create (item 4) and checks against them. Checking in
//! production would refuse every destination; not checking here would lose
//! those tests. When openvpc serves S3 or Logs, production's `Destinations`
//! asks them and this item goes away.

mod foreign;
mod reset;

use axum::Router;
use axum::body::Bytes;
use axum::handler::Handler;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;

use crate::api::account::{self, Account};
use crate::api::actions::Ctx;
use crate::api::error::ApiError;
use crate::api::query::Params;
use crate::api::server::ApiState;
use crate::api::sts::Identity;
use crate::records::region::InternetPolicy;
use crate::store::Store;

pub use foreign::{CompatDestinations, PREFIX};
pub use reset::reset;

/// The account moto's tests expect to be (moto's `DEFAULT_ACCOUNT_ID`).
pub const ACCOUNT_ID: &str = "123456789012";

/// moto's account, created with fresh (unused) keys if the store lacks it.
pub fn ensure_account(store: &dyn Store) -> Result<Account, ApiError> {
    if let Some(existing) = account::by_id(store, ACCOUNT_ID)? {
        return Ok(existing);
    }
    let created = Account::generate("moto", Some(ACCOUNT_ID));
    account::create(store, &created)?;
    Ok(created)
}

/// How the region judges internet gateways under the flag (item 6): moto's
/// suite runs no edge node, and moto models every internet gateway as
/// forwarding (its routes `active`, Elastic IPs associating in any VPC), so
/// the truth ([`InternetPolicy::Edges`]) would fail those checks.
pub fn internet_policy(enabled: bool) -> InternetPolicy {
    if enabled {
        InternetPolicy::Assumed
    } else {
        InternetPolicy::Edges
    }
}

/// What `ApiState::moto_compat` holds for the `--moto-compat` flag: moto's
/// account (made if missing, with a loud warning) when `enabled`, else
/// `None`.
pub fn setup(store: &dyn Store, enabled: bool) -> Result<Option<Account>, ApiError> {
    if !enabled {
        return Ok(None);
    }
    let moto = ensure_account(store)?;
    tracing::warn!(
        account = %moto.id,
        "--moto-compat: SIGNATURES ARE NOT VERIFIED (any key acts as account {}) and \
         POST /moto-api/reset DELETES EVERY RESOURCE; for moto's test suite only",
        moto.id
    );
    Ok(Some(moto))
}

/// The mode a server runs in, read from its state; its methods are the
/// hooks `server` calls.
#[derive(Debug, Clone, Copy)]
pub enum Mode<'a> {
    /// Every signature verified, each key its own account, EC2, ELBv2 and
    /// STS only.
    Production,
    /// `--moto-compat`, acting as this account: everything the module
    /// header lists.
    Moto(&'a Account),
}

impl<'a> Mode<'a> {
    /// The mode `state` was started in.
    pub fn of(state: &'a ApiState) -> Self {
        match &state.moto_compat {
            Some(moto) => Mode::Moto(moto),
            None => Mode::Production,
        }
    }

    /// Router hook (item 2 and 4): adds the reset hook, and sends every
    /// other path to `api` as S3's path-style calls need.
    pub fn routes<H, T>(self, router: Router<ApiState>, api: H) -> Router<ApiState>
    where
        H: Handler<T, ApiState>,
        T: 'static,
    {
        match self {
            Mode::Production => router,
            Mode::Moto(_) => router
                .route("/moto-api/reset", axum::routing::any(reset::handle))
                .fallback(api),
        }
    }

    /// Hook before a request is read as a Query API call (item 4): the
    /// answer to another service's call, or `None` to carry on.
    pub async fn foreign(
        self,
        state: &ApiState,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Option<Response> {
        let Mode::Moto(moto) = self else {
            return None;
        };
        let (store, account) = (std::sync::Arc::clone(&state.store), moto.id.clone());
        let (m, p, h, b) = (
            method.clone(),
            uri.path().to_owned(),
            headers.clone(),
            body.clone(),
        );
        tokio::task::spawn_blocking(move || {
            foreign::answer(store.as_ref(), &account, &m, &p, &h, &b)
        })
        .await
        .ok()
        .flatten()
    }

    /// Authentication hook (item 1): the account every request acts as
    /// without its signature being verified, or `None` to verify it.
    pub fn fixed_account(self) -> Option<&'a Account> {
        match self {
            Mode::Production => None,
            Mode::Moto(moto) => Some(moto),
        }
    }

    /// STS hook (item 3): who `GetCallerIdentity` says `account` is.
    pub fn caller(self, account: &Account) -> Identity {
        match self {
            Mode::Production => Identity::root(account),
            // moto's IAM user `moto`, with the account's key as user ID.
            Mode::Moto(moto) => Identity {
                account: moto.id.clone(),
                arn: format!("arn:aws:iam::{}:user/{}", moto.id, moto.name),
                user_id: moto.access_key_id.clone(),
            },
        }
    }

    /// EC2 hook (item 5): this mode's answer to an EC2 action it answers
    /// differently, or `None` for the usual dispatch.
    pub fn ec2_action(self, ctx: &Ctx, params: &Params) -> Option<Result<String, ApiError>> {
        match self {
            Mode::Production => None,
            Mode::Moto(_) => foreign::ec2_action(ctx, params),
        }
    }
}
