package openflow

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Instruction is one OpenFlow 1.3 instruction of a flow.
type Instruction interface {
	// AppendInstruction appends the instruction's wire encoding.
	AppendInstruction(b []byte) ([]byte, error)
	// String renders the instruction in ovs-ofctl syntax.
	String() string
}

// Instruction types.
const (
	instGotoTable     = 1
	instWriteMetadata = 2
	instWriteActions  = 3
	instApplyActions  = 4
	instClearActions  = 5
)

func beginInstruction(b []byte, typ uint16) ([]byte, int) {
	start := len(b)
	b = appendU16(b, typ)
	return appendU16(b, 0), start
}

func endInstruction(b []byte, start int) ([]byte, error) {
	b = padTo8(b, start)
	if err := putLen16(b, start+2, start, "instruction"); err != nil {
		return b[:start], err
	}
	return b, nil
}

// AppendInstructions appends a list of instructions.
func AppendInstructions(b []byte, insts []Instruction) ([]byte, error) {
	start := len(b)
	for i, in := range insts {
		var err error
		if b, err = in.AppendInstruction(b); err != nil {
			return b[:start], fmt.Errorf("instruction %d (%T): %w", i, in, err)
		}
	}
	return b, nil
}

// DecodeInstructions decodes a list of instructions; unknown ones become
// UnknownInstruction.
func DecodeInstructions(b []byte) ([]Instruction, error) {
	var out []Instruction
	for len(b) > 0 {
		if len(b) < 8 {
			return nil, fmt.Errorf("instruction list: %d trailing bytes", len(b))
		}
		typ := uint16(b[0])<<8 | uint16(b[1])
		n := int(b[2])<<8 | int(b[3])
		if n < 8 || n%8 != 0 || n > len(b) {
			return nil, fmt.Errorf("instruction type %d: bad length %d (%d bytes left)", typ, n, len(b))
		}
		in, err := decodeInstruction(typ, b[:n:n])
		if err != nil {
			return nil, err
		}
		out = append(out, in)
		b = b[n:]
	}
	return out, nil
}

func decodeInstruction(typ uint16, b []byte) (Instruction, error) {
	r := &reader{b: b[4:]}
	switch typ {
	case instGotoTable:
		in := GotoTable{Table: r.u8()}
		return in, r.err
	case instWriteMetadata:
		r.skip(4)
		in := WriteMetadata{Metadata: r.u64(), Mask: r.u64()}
		return in, r.err
	case instWriteActions, instApplyActions:
		r.skip(4)
		acts, err := DecodeActions(r.rest())
		if err != nil {
			return nil, fmt.Errorf("instruction type %d: %w", typ, err)
		}
		if typ == instWriteActions {
			return WriteActions{Actions: acts}, nil
		}
		return ApplyActions{Actions: acts}, nil
	case instClearActions:
		return ClearActions{}, nil
	}
	return UnknownInstruction{Data: b}, nil
}

// InstructionsString renders a flow's instructions as ovs-ofctl does, the
// apply-actions inline: "ct(table=3),goto_table:4"; none is "drop".
func InstructionsString(insts []Instruction) string {
	if len(insts) == 0 {
		return "drop"
	}
	var parts []string
	for _, in := range insts {
		if a, ok := in.(ApplyActions); ok {
			if len(a.Actions) == 0 {
				continue
			}
		}
		parts = append(parts, in.String())
	}
	if len(parts) == 0 {
		return "drop"
	}
	return strings.Join(parts, ",")
}

// GotoTable continues the pipeline in a later table.
type GotoTable struct{ Table uint8 }

func (in GotoTable) AppendInstruction(b []byte) ([]byte, error) {
	b, start := beginInstruction(b, instGotoTable)
	b = append(b, in.Table)
	return endInstruction(b, start)
}

func (in GotoTable) String() string { return "goto_table:" + strconv.Itoa(int(in.Table)) }

// WriteMetadata sets the masked bits of the metadata register.
type WriteMetadata struct {
	Metadata uint64
	Mask     uint64
}

func (in WriteMetadata) AppendInstruction(b []byte) ([]byte, error) {
	b, start := beginInstruction(b, instWriteMetadata)
	b = appendZeros(b, 4)
	b = appendU64(b, in.Metadata)
	b = appendU64(b, in.Mask)
	return endInstruction(b, start)
}

func (in WriteMetadata) String() string {
	if in.Mask == ^uint64(0) {
		return fmt.Sprintf("write_metadata:0x%x", in.Metadata)
	}
	return fmt.Sprintf("write_metadata:0x%x/0x%x", in.Metadata, in.Mask)
}

func appendActionsInstruction(b []byte, typ uint16, acts []Action) ([]byte, error) {
	b, start := beginInstruction(b, typ)
	b = appendZeros(b, 4)
	b, err := AppendActions(b, acts)
	if err != nil {
		return b[:start], err
	}
	return endInstruction(b, start)
}

// ApplyActions runs actions on the packet now.
type ApplyActions struct{ Actions []Action }

// Apply is shorthand for ApplyActions{Actions: actions}.
func Apply(actions ...Action) ApplyActions { return ApplyActions{Actions: actions} }

func (in ApplyActions) AppendInstruction(b []byte) ([]byte, error) {
	return appendActionsInstruction(b, instApplyActions, in.Actions)
}

func (in ApplyActions) String() string { return ActionsString(in.Actions) }

// WriteActions adds actions to the action set, run when the pipeline ends.
type WriteActions struct{ Actions []Action }

func (in WriteActions) AppendInstruction(b []byte) ([]byte, error) {
	return appendActionsInstruction(b, instWriteActions, in.Actions)
}

func (in WriteActions) String() string {
	return "write_actions(" + ActionsString(in.Actions) + ")"
}

// ClearActions empties the action set.
type ClearActions struct{}

func (in ClearActions) AppendInstruction(b []byte) ([]byte, error) {
	b, start := beginInstruction(b, instClearActions)
	b = appendZeros(b, 4)
	return endInstruction(b, start)
}

func (in ClearActions) String() string { return "clear_actions" }

// UnknownInstruction is an instruction this codec does not decode, kept
// whole so it re-encodes unchanged.
type UnknownInstruction struct{ Data []byte }

func (in UnknownInstruction) AppendInstruction(b []byte) ([]byte, error) {
	if len(in.Data) < 8 || len(in.Data)%8 != 0 {
		return b, fmt.Errorf("unknown instruction of %d bytes: not a whole instruction", len(in.Data))
	}
	return append(b, in.Data...), nil
}

func (in UnknownInstruction) String() string {
	return "unknown_instruction(" + hex.EncodeToString(in.Data) + ")"
}
