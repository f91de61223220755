//go:build !linux

package gateway

import (
	"context"
	"errors"
)

func configureHost(context.Context, Config) error {
	return errors.New("gateway host configuration is only implemented on Linux")
}
