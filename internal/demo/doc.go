// Package demo runs ovsnet end to end on one Linux machine (see demo_linux.go).
package demo
