package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/state"
	"github.com/latchnet/latch/coordinator/store"
	"github.com/latchnet/latch/policy"
)

// validatePolicies checks policy YAML without applying it and returns
// the validator's problems with their lines, or the change it would make.
// A policy without a namespace is in the "namespace" query parameter's
// namespace (as kubectl's -n); without it, every policy must name one.
func (s *Server) validatePolicies(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	ps, err := policy.ParseFilesWith(policyOptions(c), policy.File{Name: "editor", Data: body})
	var ve *policy.ValidationError
	if errors.As(err, &ve) {
		out := adminapi.Validation{}
		for _, fe := range ve.Errors {
			out.Problems = append(out.Problems, adminapi.PolicyProblem{Document: fe.Document, Line: fe.Line, Field: fe.Field, Reason: fe.Reason, Message: fe.Error()})
		}
		return c.JSON(http.StatusOK, out)
	}
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		return c.JSON(http.StatusOK, adminapi.Validation{Problems: []adminapi.PolicyProblem{{Reason: "no NetworkPolicy documents found", Message: "no NetworkPolicy documents found: paste at least one"}}})
	}
	return s.read(c, func(tx store.Tx) (any, error) {
		stored, err := tx.ListPolicies()
		if err != nil {
			return nil, err
		}
		changes, err := state.PolicyChanges(stored, ps)
		if err != nil {
			return nil, err
		}
		out := adminapi.Validation{Valid: true}
		for _, ch := range changes {
			out.Changes = append(out.Changes, adminapi.PolicyChange{Key: ch.Key, Before: ch.Before, After: ch.After})
		}
		return out, nil
	})
}
