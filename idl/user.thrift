// The music app's user service, as the seed registers it in etcd and fronts it with a gateway.
include "base.thrift"

namespace rs music.service.user
namespace go music.service.user

struct User {
    1: required i64 user_id,
    2: required string username,
    // Unix time in seconds at which the user registered.
    3: required i64 created_at,
}

struct CreateUserRequest {
    1: required string username (api.body = "username", api.vd = "mblen($) >= 1 && mblen($) <= 32"),
    2: required string password (api.body = "password", api.vd = "len($) >= 6 && len($) <= 64"),
}

struct CreateUserResponse {
    1: optional i64 user_id,
    255: required base.BaseResp base_resp,
}

struct LoginRequest {
    1: required string username (api.body = "username", api.vd = "mblen($) >= 1 && mblen($) <= 32"),
    2: required string password (api.body = "password", api.vd = "len($) >= 6 && len($) <= 64"),
}

struct LoginResponse {
    1: optional i64 user_id,
    255: required base.BaseResp base_resp,
}

struct GetUserRequest {
    1: required i64 user_id (api.path = "user_id", api.vd = "$ > 0"),
}

struct GetUserResponse {
    1: optional User user,
    255: required base.BaseResp base_resp,
}

service UserService {
    // Registers a user; UserAlreadyExist when the name is taken.
    CreateUserResponse CreateUser(1: CreateUserRequest req) (api.post = "/api/user/register")
    // Checks a password; on success the gateway issues a token for `user_id`.
    LoginResponse Login(1: LoginRequest req) (api.post = "/api/user/login", api.issue_token = "user_id")
    // A user's public profile; only for a logged-in caller.
    GetUserResponse GetUser(1: GetUserRequest req) (api.get = "/api/user/:user_id", api.auth = "true")
} (registry.name = "service.music.user")
