// Command gateway is the seed's API gateway in Go: Hertz binds and validates JSON, a Kitex
// client resolving through registry-etcd calls the user service, and every answer is
// SendResponse's {code, message, data}. GET /api/user/:user_id needs a bearer token that
// login issues (HS256).
//
// With OTEL_EXPORTER_OTLP_ENDPOINT set, requests are traced as a Hertz and Kitex user traces
// them (see internal/telemetry): hertz-contrib/obs-opentelemetry's server tracer and
// middleware make the HTTP server span, and kitex-contrib/obs-opentelemetry's client suite the
// RPC client span, whose context travels over TTHeader to the service.
package main

import (
	"context"
	"flag"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cloudwego/hertz/pkg/app"
	"github.com/cloudwego/hertz/pkg/app/server"
	"github.com/cloudwego/hertz/pkg/common/config"
	"github.com/cloudwego/kitex/client"
	"github.com/cloudwego/kitex/pkg/retry"
	"github.com/golang-jwt/jwt/v5"
	hertztracing "github.com/hertz-contrib/obs-opentelemetry/tracing"
	kitextracing "github.com/kitex-contrib/obs-opentelemetry/tracing"
	etcd "github.com/kitex-contrib/registry-etcd"

	"kitexpeer/internal/telemetry"
	"kitexpeer/kitex_gen/music/base"
	"kitexpeer/kitex_gen/music/service/user"
	"kitexpeer/kitex_gen/music/service/user/userservice"
)

// The request models, with the tags hz writes from the IDL's api.body and api.vd annotations.
type credentials struct {
	Username string `json:"username" vd:"mblen($) >= 1 && mblen($) <= 32"`
	Password string `json:"password" vd:"len($) >= 6 && len($) <= 64"`
}

type userPath struct {
	UserID int64 `path:"user_id" vd:"$ > 0"`
}

// gateway holds what the handlers share.
type gateway struct {
	users  userservice.Client
	secret []byte
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8889", "address to serve HTTP on")
	endpoints := flag.String("etcd-endpoints", "127.0.0.1:2379", "etcd endpoints, comma-separated")
	secret := flag.String("jwt-secret", "", "HS256 secret for tokens, 32 bytes or more")
	flag.Parse()
	if len(*secret) < 32 {
		log.Fatal("-jwt-secret must be 32 bytes or more")
	}

	tracing, err := telemetry.Setup(context.Background(), "hertz-gateway")
	if err != nil {
		log.Fatal(err)
	}
	r, err := etcd.NewEtcdResolver(strings.Split(*endpoints, ","))
	if err != nil {
		log.Fatal(err)
	}
	clientOpts := []client.Option{
		client.WithResolver(r),
		client.WithRPCTimeout(3 * time.Second),
		client.WithConnectTimeout(50 * time.Millisecond),
		client.WithFailureRetry(retry.NewFailurePolicy()),
	}
	serverOpts := []config.Option{server.WithHostPorts(*listen)}
	var traceRequests app.HandlerFunc
	if tracing != nil {
		// The suite also switches the client to TTHeader, which carries the trace context.
		clientOpts = append(clientOpts, client.WithSuite(kitextracing.NewClientSuite()))
		tracer, cfg := hertztracing.NewServerTracer()
		serverOpts = append(serverOpts, tracer)
		traceRequests = hertztracing.ServerMiddleware(cfg)
	}
	users, err := userservice.NewClient("service.music.user", clientOpts...)
	if err != nil {
		log.Fatal(err)
	}
	g := &gateway{users: users, secret: []byte(*secret)}

	h := server.New(serverOpts...)
	if traceRequests != nil {
		h.Use(traceRequests)
	}
	// Hertz runs these hooks when its own SIGINT/SIGTERM handler shuts the server down: the
	// spans still batched go out then.
	h.OnShutdown = append(h.OnShutdown, func(context.Context) { tracing.Shutdown() })
	h.GET("/healthz", func(ctx context.Context, c *app.RequestContext) { c.String(http.StatusOK, "ok") })
	userGroup := h.Group("/api/user")
	userGroup.POST("/register", g.createUser)
	userGroup.POST("/login", g.login)
	userGroup.GET("/:user_id", g.authenticated, g.getUser)
	h.Spin()
}

// sendResponse writes the seed's envelope; data is null unless the call succeeded.
func sendResponse(c *app.RequestContext, status *base.BaseResp, data any) {
	if status.GetStatusCode() != int64(base.ErrCode_Success) {
		data = nil
	}
	c.JSON(http.StatusOK, map[string]any{
		"code":    status.GetStatusCode(),
		"message": status.GetStatusMessage(),
		"data":    data,
	})
}

// rpcFailed answers a call that did not reach the service, as ServiceErr.
func rpcFailed(c *app.RequestContext, err error) {
	log.Printf("rpc failed: %v", err)
	sendResponse(c, &base.BaseResp{StatusCode: int64(base.ErrCode_ServiceErr), StatusMessage: "service unavailable"}, nil)
}

func badRequest(c *app.RequestContext, err error) {
	c.JSON(http.StatusBadRequest, map[string]string{"error": err.Error()})
}

func (g *gateway) createUser(ctx context.Context, c *app.RequestContext) {
	var req credentials
	if err := c.BindAndValidate(&req); err != nil {
		badRequest(c, err)
		return
	}
	resp, err := g.users.CreateUser(ctx, &user.CreateUserRequest{Username: req.Username, Password: req.Password})
	if err != nil {
		rpcFailed(c, err)
		return
	}
	sendResponse(c, resp.BaseResp, map[string]any{"user_id": resp.GetUserId()})
}

func (g *gateway) login(ctx context.Context, c *app.RequestContext) {
	var req credentials
	if err := c.BindAndValidate(&req); err != nil {
		badRequest(c, err)
		return
	}
	resp, err := g.users.Login(ctx, &user.LoginRequest{Username: req.Username, Password: req.Password})
	if err != nil {
		rpcFailed(c, err)
		return
	}
	data := map[string]any{"user_id": resp.GetUserId()}
	if resp.BaseResp.GetStatusCode() == int64(base.ErrCode_Success) {
		expires := time.Now().Add(24 * time.Hour)
		claims := jwt.MapClaims{"sub": strconv.FormatInt(resp.GetUserId(), 10), "exp": expires.Unix()}
		token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(g.secret)
		if err != nil {
			rpcFailed(c, err)
			return
		}
		data["token"], data["expires_at"] = token, expires.Unix()
	}
	sendResponse(c, resp.BaseResp, data)
}

// authenticated lets a request with a valid bearer token through; 401 otherwise.
func (g *gateway) authenticated(ctx context.Context, c *app.RequestContext) {
	raw, ok := strings.CutPrefix(string(c.GetHeader("Authorization")), "Bearer ")
	_, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return g.secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if !ok || err != nil {
		c.AbortWithStatusJSON(http.StatusUnauthorized, map[string]any{
			"code": base.ErrCode_AuthorizationFailed, "message": "a valid bearer token is required", "data": nil,
		})
		return
	}
	c.Next(ctx)
}

func (g *gateway) getUser(ctx context.Context, c *app.RequestContext) {
	var req userPath
	if err := c.BindAndValidate(&req); err != nil {
		badRequest(c, err)
		return
	}
	resp, err := g.users.GetUser(ctx, &user.GetUserRequest{UserId: req.UserID})
	if err != nil {
		rpcFailed(c, err)
		return
	}
	sendResponse(c, resp.BaseResp, map[string]any{"user": resp.User})
}
