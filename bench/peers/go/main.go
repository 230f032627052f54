// Command flw-bench-go is a minimal stdio MCP server in Go serving the
// benchmark tools (echo, cpu, sleep, hold, wait_async, wait_sync), standard
// library only. wait_async and wait_sync are the same code: a goroutine that
// sleeps is both.
//
// A bufio reader takes newline-delimited JSON-RPC from stdin; every
// tools/call runs in its own goroutine with a context that
// notifications/cancelled cancels. Replies go through one writer goroutine
// that flushes its buffered writer whenever no more replies are queued.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

type request struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
}

type response struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type content struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type toolResult struct {
	Content []content `json:"content"`
	IsError bool      `json:"isError"`
}

type server struct {
	out     chan []byte
	mu      sync.Mutex
	cancels map[string]context.CancelFunc
}

var protocolVersions = map[string]bool{"2025-06-18": true, "2025-11-25": true, "2026-07-28": true}

func schema(name, typ string) map[string]any {
	return map[string]any{
		"type":       "object",
		"properties": map[string]any{name: map[string]any{"type": typ}},
		"required":   []string{name},
	}
}

var tools = []map[string]any{
	{"name": "echo", "description": "Return the text unchanged.", "inputSchema": schema("text", "string")},
	{"name": "cpu", "description": "Spin a loop n times.", "inputSchema": schema("n", "integer")},
	{"name": "sleep", "description": "Wait ms milliseconds.", "inputSchema": schema("ms", "integer")},
	{"name": "hold", "description": "Start `sleep 300` and hold a request open.", "inputSchema": schema("port", "integer")},
	{"name": "wait_async", "description": "Wait ms milliseconds.", "inputSchema": schema("ms", "integer")},
	{"name": "wait_sync", "description": "Wait ms milliseconds.", "inputSchema": schema("ms", "integer")},
}

func main() {
	s := &server{out: make(chan []byte, 4096), cancels: map[string]context.CancelFunc{}}
	done := make(chan struct{})
	go s.writer(done)
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	for {
		line, err := in.ReadBytes('\n')
		if len(line) > 1 {
			s.handle(line)
		}
		if err != nil {
			break
		}
	}
	os.Exit(0)
}

// writer writes queued replies and flushes once the queue is empty.
func (s *server) writer(done chan struct{}) {
	w := bufio.NewWriterSize(os.Stdout, 1<<16)
	for line := range s.out {
		w.Write(line)
		for more := true; more; {
			select {
			case l := <-s.out:
				w.Write(l)
			default:
				more = false
			}
		}
		if err := w.Flush(); err != nil {
			os.Exit(1)
		}
	}
	close(done)
}

func (s *server) reply(id json.RawMessage, result any, rerr *rpcError) {
	b, err := json.Marshal(response{JSONRPC: "2.0", ID: id, Result: result, Error: rerr})
	if err != nil {
		b, _ = json.Marshal(response{JSONRPC: "2.0", ID: id, Error: &rpcError{-32603, err.Error()}})
	}
	s.out <- append(b, '\n')
}

func (s *server) handle(line []byte) {
	var req request
	if err := json.Unmarshal(line, &req); err != nil {
		s.reply(json.RawMessage("null"), nil, &rpcError{-32700, "parse error"})
		return
	}
	if req.ID == nil {
		if req.Method == "notifications/cancelled" {
			var p struct {
				RequestID json.RawMessage `json:"requestId"`
			}
			if json.Unmarshal(req.Params, &p) == nil {
				s.mu.Lock()
				cancel := s.cancels[string(p.RequestID)]
				s.mu.Unlock()
				if cancel != nil {
					cancel()
				}
			}
		}
		return
	}
	switch req.Method {
	case "initialize":
		var p struct {
			ProtocolVersion string `json:"protocolVersion"`
		}
		json.Unmarshal(req.Params, &p)
		version := p.ProtocolVersion
		if !protocolVersions[version] {
			version = "2025-11-25"
		}
		s.reply(req.ID, map[string]any{
			"protocolVersion": version,
			"capabilities":    map[string]any{"tools": map[string]any{}},
			"serverInfo":      map[string]any{"name": "flw-bench-go", "version": "1"},
		}, nil)
	case "ping":
		s.reply(req.ID, map[string]any{}, nil)
	case "tools/list":
		s.reply(req.ID, map[string]any{"tools": tools}, nil)
	case "tools/call":
		ctx, cancel := context.WithCancel(context.Background())
		key := string(req.ID)
		s.mu.Lock()
		s.cancels[key] = cancel
		s.mu.Unlock()
		go func() {
			defer func() {
				s.mu.Lock()
				delete(s.cancels, key)
				s.mu.Unlock()
				cancel()
			}()
			text, err := call(ctx, req.Params)
			if ctx.Err() != nil {
				return // cancelled: no reply
			}
			if err != nil {
				s.reply(req.ID, toolResult{[]content{{"text", err.Error()}}, true}, nil)
				return
			}
			s.reply(req.ID, toolResult{[]content{{"text", text}}, false}, nil)
		}()
	default:
		s.reply(req.ID, nil, &rpcError{-32601, "method not found: " + req.Method})
	}
}

func call(ctx context.Context, params json.RawMessage) (string, error) {
	var p struct {
		Name      string `json:"name"`
		Arguments struct {
			Text string `json:"text"`
			N    int64  `json:"n"`
			Ms   int64  `json:"ms"`
			Port int    `json:"port"`
		} `json:"arguments"`
	}
	if err := json.Unmarshal(params, &p); err != nil {
		return "", err
	}
	a := p.Arguments
	switch p.Name {
	case "echo":
		return a.Text, nil
	case "cpu":
		var x int64
		for i := int64(0); i < a.N; i++ {
			x = (x*31 + i) % 1000003
		}
		return strconv.FormatInt(x, 10), nil
	case "sleep", "wait_async", "wait_sync":
		time.Sleep(time.Duration(a.Ms) * time.Millisecond)
		return "ok", nil
	case "hold":
		return hold(ctx, a.Port)
	}
	return "", fmt.Errorf("unknown tool %q", p.Name)
}

// hold starts `sleep 300`, sends a request to 127.0.0.1:port and reads the
// answer until the connection closes or ctx is cancelled.
func hold(ctx context.Context, port int) (string, error) {
	cmd := exec.CommandContext(ctx, "sleep", "300")
	if err := cmd.Start(); err != nil {
		return "", err
	}
	go cmd.Wait()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	fmt.Fprintf(conn, "GET /hold?pid=%d HTTP/1.1\r\nHost: bench\r\n\r\n", cmd.Process.Pid)
	body, err := io.ReadAll(conn)
	return string(body), err
}
