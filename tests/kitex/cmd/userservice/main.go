// Command userservice is the seed's user service in Go: a Kitex UserService registered in
// etcd by registry-etcd under service.music.user, with the users in memory.
package main

import (
	"context"
	"errors"
	"flag"
	"log"
	"net"
	"strings"
	"time"

	"github.com/cloudwego/kitex/pkg/rpcinfo"
	"github.com/cloudwego/kitex/pkg/transmeta"
	"github.com/cloudwego/kitex/server"
	etcd "github.com/kitex-contrib/registry-etcd"

	"kitexpeer/internal/store"
	"kitexpeer/kitex_gen/music/base"
	"kitexpeer/kitex_gen/music/service/user"
	"kitexpeer/kitex_gen/music/service/user/userservice"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8888", "address to serve on")
	endpoints := flag.String("etcd-endpoints", "127.0.0.1:2379", "etcd endpoints, comma-separated")
	name := flag.String("service-name", "service.music.user", "name to register under")
	flag.Parse()

	r, err := etcd.NewEtcdRegistry(strings.Split(*endpoints, ","))
	if err != nil {
		log.Fatal(err)
	}
	addr, err := net.ResolveTCPAddr("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	svr := userservice.NewServer(&UserServiceImpl{users: store.New()},
		server.WithServiceAddr(addr),
		server.WithRegistry(r),
		server.WithServerBasicInfo(&rpcinfo.EndpointBasicInfo{ServiceName: *name}),
		// Metainfo and the caller's timeout travel in TTHeader; Kitex reads them only with this.
		server.WithMetaHandler(transmeta.ServerTTHeaderHandler),
	)
	log.Printf("user service listening on %s", *listen)
	if err := svr.Run(); err != nil {
		log.Fatal(err)
	}
}

// UserServiceImpl implements the IDL's UserService.
type UserServiceImpl struct {
	users *store.Store
}

func baseResp(code base.ErrCode, message string) *base.BaseResp {
	return &base.BaseResp{StatusCode: int64(code), StatusMessage: message, ServiceTime: time.Now().UnixMilli()}
}

// status maps a store error to the IDL's error codes, as the Rust service answers them.
func status(err error) *base.BaseResp {
	switch {
	case err == nil:
		return baseResp(base.ErrCode_Success, "Success")
	case errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrNoSuchUser):
		return baseResp(base.ErrCode_ParamErr, err.Error())
	case errors.Is(err, store.ErrTaken):
		return baseResp(base.ErrCode_UserAlreadyExist, err.Error())
	case errors.Is(err, store.ErrBadCredentials):
		return baseResp(base.ErrCode_AuthorizationFailed, err.Error())
	default:
		log.Printf("internal failure: %v", err)
		return baseResp(base.ErrCode_ServiceErr, "internal error; try again later")
	}
}

// CreateUser registers a user.
func (s *UserServiceImpl) CreateUser(ctx context.Context, req *user.CreateUserRequest) (*user.CreateUserResponse, error) {
	id, err := s.users.Create(req.Username, req.Password)
	resp := &user.CreateUserResponse{BaseResp: status(err)}
	if err == nil {
		resp.UserId = &id
	}
	return resp, nil
}

// Login checks a password.
func (s *UserServiceImpl) Login(ctx context.Context, req *user.LoginRequest) (*user.LoginResponse, error) {
	id, err := s.users.Login(req.Username, req.Password)
	resp := &user.LoginResponse{BaseResp: status(err)}
	if err == nil {
		resp.UserId = &id
	}
	return resp, nil
}

// GetUser returns a user's public profile.
func (s *UserServiceImpl) GetUser(ctx context.Context, req *user.GetUserRequest) (*user.GetUserResponse, error) {
	u, err := s.users.Get(req.UserId)
	resp := &user.GetUserResponse{BaseResp: status(err)}
	if err == nil {
		resp.User = &user.User{UserId: u.ID, Username: u.Username, CreatedAt: u.CreatedAt}
	}
	return resp, nil
}
