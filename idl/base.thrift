// Types every service shares. The error codes are defined here and nowhere else:
// services answer them in BaseResp, the gateway passes them on as `code`.
namespace rs music.base
namespace go music.base

enum ErrCode {
    Success = 0,
    ServiceErr = 10001,
    ParamErr = 10002,
    UserAlreadyExist = 10003,
    AuthorizationFailed = 10004,
}

// The status part of every response (field 255 by CloudWeGo convention).
struct BaseResp {
    1: required i64 status_code,
    2: required string status_message,
    // Unix time in milliseconds at which the service answered.
    3: required i64 service_time,
}
