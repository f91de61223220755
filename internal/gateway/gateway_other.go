//go:build !linux

package gateway

import (
	"context"
	"errors"
	"net/netip"
)

func configureHost(context.Context, Config) error {
	return errors.New("gateway host configuration is only implemented on Linux")
}

// SetClusterCIDRs needs nftables, Linux only.
func SetClusterCIDRs(context.Context, Config, []netip.Prefix) error {
	return errors.New("masquerade exemptions are only implemented on Linux")
}

// NFT stands for the nftables handle, which only Linux has.
type NFT struct{}

// NewNFT returns a handle.
func NewNFT() *NFT { return &NFT{} }
