package api

import (
	"net/http"

	"github.com/labstack/echo/v4"
	"github.com/latchnet/latch/adminapi"
	"github.com/latchnet/latch/coordinator/auth"
	"github.com/latchnet/latch/coordinator/store"
)

// The users of the web console (and of the admin API with a session):
// list, create, delete.

func (s *Server) listUsers(c echo.Context) error {
	return s.read(c, func(tx store.Tx) (any, error) {
		us, err := tx.ListUsers()
		return list(us, toUser), err
	})
}

// createUser creates a user; without a password in the request one is
// generated and returned once.
func (s *Server) createUser(c echo.Context) error {
	var req adminapi.UserRequest
	if err := bind(c, &req); err != nil {
		return err
	}
	if err := auth.CheckUserName(req.Name); err != nil {
		return fail(http.StatusBadRequest, "invalid", "%v", err)
	}
	if err := auth.CheckRole(req.Role); err != nil {
		return fail(http.StatusBadRequest, "invalid", "%v", err)
	}
	generated := req.Password == ""
	if generated {
		req.Password = auth.NewPassword()
	}
	if err := auth.CheckPassword(req.Password); err != nil {
		return fail(http.StatusBadRequest, "invalid", "%v", err)
	}
	hash, err := auth.HashPassword(req.Password)
	if err != nil {
		return err
	}
	if err := s.cfg.State.CreateUser(c.Request().Context(), PrincipalOf(c).Name, store.User{Name: req.Name, Role: req.Role, PasswordHash: hash}); err != nil {
		return err
	}
	out := adminapi.UserCreated{Name: req.Name, Role: req.Role}
	if generated {
		out.Password = req.Password
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) deleteUser(c echo.Context) error {
	if err := s.cfg.State.DeleteUser(c.Request().Context(), PrincipalOf(c).Name, c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
