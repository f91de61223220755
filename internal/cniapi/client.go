package cniapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// maxResponseBytes bounds what the client reads from the agent.
const maxResponseBytes = 4 << 20

// Client calls the agent's CNI API over its unix socket, one connection per
// call (see wire.go for why it is not net/http). It is safe for concurrent
// use. Every error it returns is a *types.Error whose code tells the runtime
// what to do (see the package documentation).
type Client struct {
	socket string
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	return &Client{socket: socket}
}

// Close releases nothing: connections do not outlive a call. It is kept so
// callers need not know.
func (c *Client) Close() {}

// Add asks the agent to attach the container. The result is in
// CurrentCNIVersion.
func (c *Client) Add(ctx context.Context, req *Request) (*current.Result, error) {
	body, err := c.call(ctx, VerbAdd, "POST", PathAdd, req)
	if err != nil {
		return nil, err
	}
	res, err := decodeResult(body)
	if err != nil {
		return nil, types.NewError(CodeProtocol, "the ovsnet agent answered ADD with an unusable result", err.Error())
	}
	return res, nil
}

// Del asks the agent to detach the container.
func (c *Client) Del(ctx context.Context, req *Request) error {
	_, err := c.call(ctx, VerbDel, "POST", PathDel, req)
	return err
}

// Check asks the agent whether the container's attachment is as expected.
func (c *Client) Check(ctx context.Context, req *Request) error {
	_, err := c.call(ctx, VerbCheck, "POST", PathCheck, req)
	return err
}

// GC asks the agent to release what the valid attachments do not name.
func (c *Client) GC(ctx context.Context, req *GCRequest) error {
	_, err := c.call(ctx, VerbGC, "POST", PathGC, req)
	return err
}

// Status asks the agent whether it can serve ADD now.
func (c *Client) Status(ctx context.Context, req *StatusRequest) error {
	_, err := c.call(ctx, VerbStatus, "POST", PathStatus, req)
	return err
}

// Version asks the agent which API versions it serves.
func (c *Client) Version(ctx context.Context) (*VersionInfo, error) {
	body, err := c.call(ctx, "VERSION", "GET", PathVersion, nil)
	if err != nil {
		return nil, err
	}
	var v VersionInfo
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, types.NewError(CodeProtocol, "the ovsnet agent answered VERSION with an unusable body", err.Error())
	}
	return &v, nil
}

func decodeResult(body []byte) (*current.Result, error) {
	r, err := current.NewResult(body)
	if err != nil {
		return nil, fmt.Errorf("decode CNI result: %w", err)
	}
	res, err := current.GetResult(r)
	if err != nil {
		return nil, fmt.Errorf("convert CNI result to %s: %w", CurrentCNIVersion, err)
	}
	return res, nil
}

// call sends one request and returns the body of a 200 answer. The agent's
// time budget is derived from ctx's deadline.
func (c *Client) call(ctx context.Context, verb Verb, method, path string, in any) ([]byte, error) {
	var body []byte
	header := map[string]string{}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, types.NewError(CodeProtocol, fmt.Sprintf("encode %s request for the ovsnet agent", verb), err.Error())
		}
		body = b
		header["Content-Type"] = "application/json"
	}
	if dl, ok := ctx.Deadline(); ok {
		remaining := time.Until(dl)
		if remaining <= 0 {
			return nil, c.transportError(verb, context.DeadlineExceeded)
		}
		header[HeaderTimeout] = TimeoutHeaderValue(AgentBudget(remaining))
	}
	status, data, err := roundTrip(ctx, c.socket, method, path, header, body)
	if err != nil {
		if errors.Is(err, errChunked) {
			return nil, types.NewError(CodeProtocol, fmt.Sprintf("unexpected answer from the ovsnet agent to %s", verb), err.Error())
		}
		return nil, c.transportError(verb, err)
	}
	if status == 200 {
		return data, nil
	}
	return nil, decodeError(verb, path, status, data)
}

// transportError maps a failure to reach the agent to "try again later": the
// agent is restarting or not yet up, which the runtime's retry outlives.
func (c *Client) transportError(verb Verb, err error) *types.Error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("the ovsnet agent did not answer %s in time", verb),
			fmt.Sprintf("socket %s; the agent may be overloaded or waiting for Open vSwitch; the runtime retries", c.socket))
	case errors.Is(err, context.Canceled):
		return types.NewError(types.ErrTryAgainLater,
			fmt.Sprintf("%s to the ovsnet agent was cancelled", verb), err.Error())
	}
	return types.NewError(types.ErrTryAgainLater,
		fmt.Sprintf("cannot reach the ovsnet agent for %s on %s", verb, c.socket),
		fmt.Sprintf("%v; check that ovsnet-agent runs on this node and serves this socket (netconf agentSocket); the runtime retries", err))
}

// decodeError turns a non-200 answer into the agent's CNI error, or into a
// protocol error when the body is not one.
func decodeError(verb Verb, path string, status int, body []byte) *types.Error {
	var e types.Error
	if err := json.Unmarshal(body, &e); err == nil && e.Code != 0 && e.Msg != "" {
		return &e
	}
	if status == 404 || status == 405 {
		return types.NewError(CodeProtocol,
			fmt.Sprintf("the ovsnet agent does not serve %s (%s, HTTP %d)", path, verb, status),
			"the agent is probably older than the plugin; upgrade the agent or install the matching plugin")
	}
	snippet := strings.TrimSpace(string(body))
	if len(snippet) > 200 {
		snippet = snippet[:200] + "..."
	}
	return types.NewError(CodeProtocol,
		fmt.Sprintf("unexpected answer from the ovsnet agent to %s: HTTP %d", verb, status), snippet)
}
