package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"
	"unicode/utf8"

	"kitexpeer/internal/store"
	"kitexpeer/kitex_gen/music/base"
	"kitexpeer/kitex_gen/music/service/user"
)

// UserServiceImpl implements the IDL's UserService with the Rust service's rules, codes and
// messages (services/user/src/handler.rs), so that one contract suite passes against both.
type UserServiceImpl struct {
	users *store.Store
}

// The IDL's api.vd rules, as written there: the Rust service's messages quote them.
const (
	usernameRule = "mblen($) >= 1 && mblen($) <= 32"
	passwordRule = "len($) >= 6 && len($) <= 64"
	userIDRule   = "$ > 0"
)

// invalidField is a field that breaks its api.vd rule.
type invalidField struct{ field, rule string }

func (e *invalidField) Error() string {
	return fmt.Sprintf("invalid field `%s`: must satisfy `%s`", e.field, e.rule)
}

// noSuchUser is a GetUser for an id nobody has.
type noSuchUser int64

func (id noSuchUser) Error() string { return fmt.Sprintf("no user with id %d", int64(id)) }

// validCredentials checks the fields in the IDL's order; mblen counts characters, len bytes.
func validCredentials(username, password string) error {
	if n := utf8.RuneCountInString(username); n < 1 || n > 32 {
		return &invalidField{"username", usernameRule}
	}
	if n := len(password); n < 6 || n > 64 {
		return &invalidField{"password", passwordRule}
	}
	return nil
}

func baseResp(code base.ErrCode, message string) *base.BaseResp {
	return &base.BaseResp{StatusCode: int64(code), StatusMessage: message, ServiceTime: time.Now().UnixMilli()}
}

// status is the BaseResp for err; internal failures are logged here, with detail, and
// answered without it.
func status(method string, err error) *base.BaseResp {
	var invalid *invalidField
	var missing noSuchUser
	switch {
	case err == nil:
		return baseResp(base.ErrCode_Success, "Success")
	case errors.As(err, &invalid), errors.As(err, &missing):
		return baseResp(base.ErrCode_ParamErr, err.Error())
	case errors.Is(err, store.ErrTaken):
		return baseResp(base.ErrCode_UserAlreadyExist, err.Error())
	case errors.Is(err, store.ErrBadCredentials):
		return baseResp(base.ErrCode_AuthorizationFailed, err.Error())
	case errors.Is(err, store.ErrBusy):
		return baseResp(base.ErrCode_ServiceErr, err.Error())
	default:
		log.Printf("%s: internal failure: %v", method, err)
		return baseResp(base.ErrCode_ServiceErr, "internal error; try again later")
	}
}

// CreateUser registers a user; UserAlreadyExist when the name is taken.
func (s *UserServiceImpl) CreateUser(ctx context.Context, req *user.CreateUserRequest) (*user.CreateUserResponse, error) {
	// The gateway validates too, but it is not the only caller.
	err := validCredentials(req.Username, req.Password)
	var id int64
	if err == nil {
		id, err = s.users.Create(ctx, req.Username, req.Password)
	}
	resp := &user.CreateUserResponse{BaseResp: status("CreateUser", err)}
	if err == nil {
		resp.UserId = &id
	}
	return resp, nil
}

// Login checks a password. Invalid input is a wrong password too: nothing tells which rule
// a stranger's guess broke.
func (s *UserServiceImpl) Login(ctx context.Context, req *user.LoginRequest) (*user.LoginResponse, error) {
	var id int64
	err := store.ErrBadCredentials
	if validCredentials(req.Username, req.Password) == nil {
		id, err = s.users.Login(ctx, req.Username, req.Password)
	}
	resp := &user.LoginResponse{BaseResp: status("Login", err)}
	if err == nil {
		resp.UserId = &id
	}
	return resp, nil
}

// GetUser returns a user's public profile.
func (s *UserServiceImpl) GetUser(ctx context.Context, req *user.GetUserRequest) (*user.GetUserResponse, error) {
	var u store.User
	var err error
	if req.UserId <= 0 {
		err = &invalidField{"user_id", userIDRule}
	} else if u, err = s.users.Get(ctx, req.UserId); errors.Is(err, store.ErrNotFound) {
		err = noSuchUser(req.UserId)
	}
	resp := &user.GetUserResponse{BaseResp: status("GetUser", err)}
	if err == nil {
		resp.User = &user.User{UserId: u.ID, Username: u.Username, CreatedAt: u.CreatedAt}
	}
	return resp, nil
}
