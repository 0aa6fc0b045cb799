package api

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/heraldpush/herald/push"
	"github.com/labstack/echo/v4"
)

// A handler that panics fails its request with a JSON 500 and is counted;
// the server goes on serving.
func TestHandlerPanicIsA500(t *testing.T) {
	s := &Server{opts: Options{Logger: slog.New(slog.DiscardHandler)}}
	e := echo.New()
	e.HTTPErrorHandler = errorHandler
	e.Use(s.recoverPanics)
	e.GET("/boom", func(echo.Context) error { panic("test: a bug in a handler") })
	e.GET("/ok", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	srv := httptest.NewServer(e)
	defer srv.Close()

	before := push.RecoveredPanics()
	resp, err := http.Get(srv.URL + "/boom")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s %q, want a JSON 500", resp.Status, resp.Header.Get("Content-Type"))
	}
	if push.RecoveredPanics() != before+1 {
		t.Fatalf("panics counted: %d, want 1", push.RecoveredPanics()-before)
	}
	resp, err = http.Get(srv.URL + "/ok")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after the panic: %v %v", resp, err)
	}
	resp.Body.Close()
}
