package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"kitexpeer/kitex_gen/music/service/user"
)

// call makes one call and prints its response as JSON.
func call(t *target, args []string) error {
	fs := subcommand(t, "call", "create USER PASS | login USER PASS | get ID")
	service := fs.String("service-name", "service.music.user", "service to call")
	fs.Parse(args)
	c, err := t.client(*service, 1)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var resp any
	switch a := fs.Args(); {
	case len(a) == 3 && a[0] == "create":
		resp, err = c.CreateUser(ctx, &user.CreateUserRequest{Username: a[1], Password: a[2]})
	case len(a) == 3 && a[0] == "login":
		resp, err = c.Login(ctx, &user.LoginRequest{Username: a[1], Password: a[2]})
	case len(a) == 2 && a[0] == "get":
		id, parseErr := strconv.ParseInt(a[1], 10, 64)
		if parseErr != nil {
			return fmt.Errorf("get: %w", parseErr)
		}
		resp, err = c.GetUser(ctx, &user.GetUserRequest{UserId: id})
	default:
		fs.Usage()
		os.Exit(2)
	}
	if err != nil {
		return err
	}
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false) // the validation messages quote rules with <, > and &
	return out.Encode(resp)
}
