package ofconn

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ovsnet/ovsnet/internal/ovs/openflow"
)

// Rejected is one message the switch refused.
type Rejected struct {
	// Index is the message's position in the slice given to Apply or
	// Bundle.
	Index int
	// Message is that message.
	Message openflow.Message
	// Err is the switch's ERROR.
	Err *openflow.ErrorMsg
}

func (r Rejected) String() string {
	return fmt.Sprintf("message %d (%s): %s", r.Index, describe(r.Message), r.Err.Name())
}

func sortRejected(r []Rejected) {
	slices.SortFunc(r, func(a, b Rejected) int { return a.Index - b.Index })
}

func joinRejected(r []Rejected) string {
	parts := make([]string, len(r))
	for i, x := range r {
		parts[i] = x.String()
	}
	return strings.Join(parts, "; ")
}

func errorsOf(r []Rejected, extra *openflow.ErrorMsg) []error {
	out := make([]error, 0, len(r)+1)
	for _, x := range r {
		out = append(out, x.Err)
	}
	if extra != nil {
		out = append(out, extra)
	}
	return out
}

// ApplyError reports the messages of an Apply that the switch rejected. The
// other messages took effect. errors.Is matches each rejection's ErrorMsg.
type ApplyError struct {
	Bridge   string
	Rejected []Rejected
}

func (e *ApplyError) Error() string {
	return fmt.Sprintf("bridge %s rejected %d OpenFlow message(s), the others were applied: %s",
		e.Bridge, len(e.Rejected), joinRejected(e.Rejected))
}

// Unwrap returns the switch's ERROR messages.
func (e *ApplyError) Unwrap() []error { return errorsOf(e.Rejected, nil) }

// BundleError reports a bundle that did not apply: nothing of it took
// effect. Either the switch rejected messages when they were added
// (Rejected, and the bundle was discarded) or it refused to commit
// (Commit). errors.Is matches each ErrorMsg.
type BundleError struct {
	Bridge   string
	BundleID uint32
	Rejected []Rejected
	Commit   *openflow.ErrorMsg
}

func (e *BundleError) Error() string {
	if e.Commit != nil {
		return fmt.Sprintf("bridge %s refused to commit OpenFlow bundle %d, nothing was applied: %s",
			e.Bridge, e.BundleID, e.Commit.Error())
	}
	return fmt.Sprintf("bridge %s rejected %d message(s) of OpenFlow bundle %d, the bundle was discarded and nothing applied: %s",
		e.Bridge, len(e.Rejected), e.BundleID, joinRejected(e.Rejected))
}

// Unwrap returns the switch's ERROR messages.
func (e *BundleError) Unwrap() []error { return errorsOf(e.Rejected, e.Commit) }

// RejectedIndexes returns the positions, in the slice given to Bundle, of
// the messages the switch rejected, so a caller can retry without them.
func (e *BundleError) RejectedIndexes() []int {
	out := make([]int, len(e.Rejected))
	for i, r := range e.Rejected {
		out[i] = r.Index
	}
	return out
}
