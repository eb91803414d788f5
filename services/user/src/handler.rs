//! UserService: every answer carries a `BaseResp`; a failure becomes its code and a message
//! that is safe to show, and internal detail goes to the log only.

use rpc::{
    music::{
        base::{BaseResp, ErrCode},
        service::user::{
            CreateUserRequest, CreateUserResponse, GetUserRequest, GetUserResponse, LoginRequest,
            LoginResponse, User, UserService,
        },
    },
    runtime::{Invalid, Validate, unix_now},
    volo_thrift::ServerError,
};

use rpc::volo_etcd::telemetry::callers_request_id;

use crate::{
    password::{Hasher, PasswordError},
    store::{Store, StoreError},
};

#[derive(Debug, Clone)]
pub struct Handler {
    store: Store,
    /// Bounds the argon2id work of `CreateUser` and `Login`.
    hasher: Hasher,
}

impl Handler {
    pub fn new(store: Store, hasher: Hasher) -> Self {
        Self { store, hasher }
    }
}

/// Why a call did not succeed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("username is already taken")]
    Taken,
    /// One answer for a wrong password and an unknown user, so names cannot be probed.
    #[error("wrong username or password")]
    BadCredentials,
    #[error("no user with id {0}")]
    NoSuchUser(i64),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Password(PasswordError),
    /// Waited too long for a hashing thread: shed rather than grow the queue.
    #[error("the service is busy; try again later")]
    Busy,
}

impl From<PasswordError> for Failure {
    fn from(e: PasswordError) -> Self {
        match e {
            PasswordError::Busy(_) => Failure::Busy,
            e => Failure::Password(e),
        }
    }
}

impl Failure {
    /// The status to answer with; internal failures are logged here, once, with detail.
    fn status(&self, method: &str) -> BaseResp {
        let code = match self {
            Failure::Invalid(_) | Failure::NoSuchUser(_) => ErrCode::PARAM_ERR,
            Failure::Taken => ErrCode::USER_ALREADY_EXIST,
            Failure::BadCredentials => ErrCode::AUTHORIZATION_FAILED,
            // Expected under a flood of logins, and one line per shed call would be a flood
            // of its own; debug only.
            Failure::Busy => {
                tracing::debug!(method, "shed: no hashing thread free in time");
                ErrCode::SERVICE_ERR
            }
            Failure::Store(_) | Failure::Password(_) => {
                tracing::error!(method, error = %self, "internal failure");
                return base_resp(ErrCode::SERVICE_ERR, "internal error; try again later");
            }
        };
        base_resp(code, &self.to_string())
    }
}

fn base_resp(code: ErrCode, message: &str) -> BaseResp {
    BaseResp {
        status_code: code.into(),
        status_message: message.to_string().into(),
        service_time: i64::try_from(unix_now().as_millis()).unwrap_or(i64::MAX),
    }
}

fn success() -> BaseResp {
    base_resp(ErrCode::SUCCESS, "Success")
}

impl Handler {
    async fn create(&self, req: CreateUserRequest) -> Result<i64, Failure> {
        // The gateway validates too, but it is not the only caller.
        req.validate()?;
        let hash = self.hasher.hash(req.password.to_string()).await?;
        let request_id = callers_request_id();
        match self
            .store
            .create_user(
                &req.username,
                &hash,
                i64::try_from(unix_now().as_secs()).unwrap_or(i64::MAX),
                request_id.as_deref(),
            )
            .await
        {
            Ok(id) => Ok(id),
            Err(StoreError::Duplicate) => Err(Failure::Taken),
            Err(e) => Err(e.into()),
        }
    }

    async fn login(&self, req: LoginRequest) -> Result<i64, Failure> {
        req.validate().map_err(|_| Failure::BadCredentials)?;
        let user = self.store.user_by_name(&req.username).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        match (
            user,
            self.hasher.verify(req.password.to_string(), stored).await?,
        ) {
            (Some(user), true) => Ok(user.id),
            _ => Err(Failure::BadCredentials),
        }
    }

    async fn get(&self, req: GetUserRequest) -> Result<User, Failure> {
        req.validate()?;
        let user = self.store.user_by_id(req.user_id).await?;
        let user = user.ok_or(Failure::NoSuchUser(req.user_id))?;
        Ok(User {
            user_id: user.id,
            username: user.username.into(),
            created_at: user.created_at,
        })
    }
}

impl UserService for Handler {
    async fn create_user(&self, req: CreateUserRequest) -> Result<CreateUserResponse, ServerError> {
        let answer = async {
            match self.create(req).await {
                Ok(id) => CreateUserResponse {
                    user_id: Some(id),
                    base_resp: success(),
                },
                Err(f) => CreateUserResponse {
                    user_id: None,
                    base_resp: f.status("CreateUser"),
                },
            }
        };
        Ok(traced("CreateUser", answer).await)
    }

    async fn login(&self, req: LoginRequest) -> Result<LoginResponse, ServerError> {
        let answer = async {
            match Handler::login(self, req).await {
                Ok(id) => LoginResponse {
                    user_id: Some(id),
                    base_resp: success(),
                },
                Err(f) => LoginResponse {
                    user_id: None,
                    base_resp: f.status("Login"),
                },
            }
        };
        Ok(traced("Login", answer).await)
    }

    async fn get_user(&self, req: GetUserRequest) -> Result<GetUserResponse, ServerError> {
        let answer = async {
            match self.get(req).await {
                Ok(user) => GetUserResponse {
                    user: Some(user),
                    base_resp: success(),
                },
                Err(f) => GetUserResponse {
                    user: None,
                    base_resp: f.status("GetUser"),
                },
            }
        };
        Ok(traced("GetUser", answer).await)
    }
}

/// Runs one call; at debug level, one line per call with its status code and how long the
/// caller still waited when it came (its deadline, from the TTHeader). The call's span, with
/// the method, the caller's request id and the trace id, is the generated `serve()`'s
/// (`volo_etcd::telemetry::ServerTraceLayer`).
async fn traced<R: HasStatus>(method: &'static str, call: impl Future<Output = R>) -> R {
    let deadline_ms = rpc::runtime::deadline::remaining().map(|left| left.as_millis() as u64);
    let answer = call.await;
    tracing::debug!(method, code = answer.status_code(), deadline_ms, "answered");
    answer
}

/// A response's `BaseResp` code, for the log.
trait HasStatus {
    fn status_code(&self) -> i64;
}

macro_rules! has_status {
    ($($response:ty),*) => {
        $(impl HasStatus for $response {
            fn status_code(&self) -> i64 {
                self.base_resp.status_code
            }
        })*
    };
}
has_status!(CreateUserResponse, LoginResponse, GetUserResponse);
