package cniserver

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/ovsnet/ovsnet/internal/cniapi"
)

// Error is a handler error with the CNI code the runtime gets for it.
// Unlike *types.Error it wraps its cause, so errors.Is and errors.As still
// reach the failure underneath (ipam.ErrExhausted, a netlink errno, an
// OpenFlow error message) after it has been given a code.
type Error struct {
	Code    uint
	Err     error
	Details string
}

func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// WithCode gives err a CNI code and details for the runtime, keeping err's
// chain.
func WithCode(code uint, err error, details string) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err, Details: details}
}

// Errorf is WithCode(code, fmt.Errorf(format, args...), details).
func Errorf(code uint, details, format string, args ...any) error {
	return &Error{Code: code, Err: fmt.Errorf(format, args...), Details: details}
}

var _ error = (*Error)(nil)

// cniError converts e for the wire; outer is the error as the handler
// returned it (it may add context around e).
func (e *Error) cniError(outer error) *types.Error {
	code := e.Code
	if code == 0 {
		code = cniapi.CodeAgentInternal
	}
	return types.NewError(code, outer.Error(), e.Details)
}
