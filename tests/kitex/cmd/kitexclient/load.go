package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cloudwego/kitex/pkg/klog"

	"kitexpeer/internal/load"
	"kitexpeer/kitex_gen/music/base"
	"kitexpeer/kitex_gen/music/service/user"
)

// runLoad keeps calls of one method in flight and prints what load.Run measured.
func runLoad(t *target, args []string) error {
	fs := subcommand(t, "load", "")
	service := fs.String("service-name", "service.music.user", "service to call")
	method := fs.String("method", "get", "get (GetUser of -user-id) or login (Login of -username, -password)")
	userID := fs.Int64("user-id", 1, "user to get")
	username := fs.String("username", "", "user to log in as")
	password := fs.String("password", "", "password to log in with")
	var o load.Options
	fs.IntVar(&o.Concurrency, "concurrency", 100, "calls in flight")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long to measure")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "how long to call before measuring")
	fs.Parse(args)
	if fs.NArg() > 0 || o.Concurrency < 1 {
		fs.Usage()
		os.Exit(2)
	}
	c, err := t.client(*service, o.Concurrency)
	if err != nil {
		return err
	}
	// Kitex logs a warning per failed attempt: at load rates, writing them would be the work.
	klog.SetLevel(klog.LevelError)

	var once func(context.Context) (*base.BaseResp, error)
	switch *method {
	case "get":
		once = func(ctx context.Context) (*base.BaseResp, error) {
			resp, err := c.GetUser(ctx, &user.GetUserRequest{UserId: *userID})
			if err != nil {
				return nil, err
			}
			return resp.BaseResp, nil
		}
	case "login":
		once = func(ctx context.Context) (*base.BaseResp, error) {
			resp, err := c.Login(ctx, &user.LoginRequest{Username: *username, Password: *password})
			if err != nil {
				return nil, err
			}
			return resp.BaseResp, nil
		}
	default:
		return fmt.Errorf("unknown -method %q: want get or login", *method)
	}
	// One call first, so that a wrong target fails at once rather than as a run of errors.
	status, err := once(context.Background())
	if err != nil {
		return err
	}
	if status.StatusCode != 0 {
		return fmt.Errorf("%s answers %d %q", *method, status.StatusCode, status.StatusMessage)
	}

	r := load.Run(context.Background(), o, func(ctx context.Context) error {
		status, err := once(ctx)
		if err == nil && status.StatusCode != 0 {
			err = errNotSuccess
		}
		return err
	})
	return json.NewEncoder(os.Stdout).Encode(r)
}

// errNotSuccess is an answer whose BaseResp is not Success: an error for the load too.
var errNotSuccess = errors.New("error status")
