// Package client talks to weir's config API (api/openapi.yaml): plain
// HTTP to a local server, SigV4-signed requests to API Gateway.
package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// maxAnswer bounds what is read of one answer; a page of 100 jobs with
// their checkpoints fits well within it.
const maxAnswer = 16 << 20

// Signing is how requests are authenticated.
type Signing int

const (
	// SignAuto signs requests to AWS endpoints (*.execute-api.REGION.amazonaws.com)
	// and sends them plain elsewhere.
	SignAuto Signing = iota
	// SignAlways signs every request, e.g. for an API Gateway custom domain.
	SignAlways
	// SignNever sends every request plain.
	SignNever
)

// Options configure a Client. BaseURL is required.
type Options struct {
	// BaseURL is the API's root, such as http://127.0.0.1:8080 or
	// https://abc123.execute-api.eu-west-1.amazonaws.com.
	BaseURL string
	// HTTP sends the requests. Default: a client with a 30 s time-out.
	HTTP *http.Client
	// Signing says when to sign. Default: SignAuto.
	Signing Signing
	// Credentials sign requests when signing. Required then; main loads
	// them from the SDK's default chain.
	Credentials aws.CredentialsProvider
	// Region signs requests; for AWS endpoints it defaults to the URL's.
	Region string
	// UserAgent is sent with every request.
	UserAgent string
}

// Client calls the config API. It is safe for concurrent use.
type Client struct {
	base   *url.URL
	http   *http.Client
	sign   bool
	creds  aws.CredentialsProvider
	region string
	agent  string
	signer *v4.Signer
}

// awsHost matches API Gateway's own host names and captures the region.
var awsHost = regexp.MustCompile(`^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$`)

// IsAWSEndpoint reports whether rawURL is an API Gateway endpoint, whose
// requests must be signed, and its region.
func IsAWSEndpoint(rawURL string) (region string, ok bool) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", false
	}
	m := awsHost.FindStringSubmatch(strings.ToLower(u.Hostname()))
	if m == nil {
		return "", false
	}
	return m[1], true
}

// ParseBaseURL checks an API URL and says what is wrong with it.
func ParseBaseURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("no API URL: pass --api URL or set WEIR_API_URL (make run prints it, e.g. http://127.0.0.1:8080)")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("API URL %q is not an http:// or https:// URL with a host: write it like http://127.0.0.1:8080", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("API URL %q has a query or fragment: give only the API's root, e.g. https://abc123.execute-api.eu-west-1.amazonaws.com", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

// New checks o and returns a Client.
func New(o Options) (*Client, error) {
	base, err := ParseBaseURL(o.BaseURL)
	if err != nil {
		return nil, err
	}
	c := &Client{base: base, http: o.HTTP, creds: o.Credentials, region: o.Region, agent: o.UserAgent}
	if c.http == nil {
		c.http = &http.Client{Timeout: 30 * time.Second}
	}
	region, isAWS := IsAWSEndpoint(o.BaseURL)
	c.sign = o.Signing == SignAlways || (o.Signing == SignAuto && isAWS)
	if c.region == "" {
		c.region = region
	}
	if c.sign {
		if c.creds == nil {
			return nil, errors.New("requests to this API must be signed but no AWS credentials were given")
		}
		if c.region == "" {
			return nil, fmt.Errorf("cannot tell the AWS region of %s to sign requests: set AWS_REGION", o.BaseURL)
		}
		c.signer = v4.NewSigner()
	}
	return c, nil
}

// Signs reports whether the client signs its requests.
func (c *Client) Signs() bool { return c.sign }

// BaseURL is the API's root.
func (c *Client) BaseURL() string { return c.base.String() }

// Create creates a job.
func (c *Client) Create(ctx context.Context, in CreateJob) (Job, error) {
	var j Job
	_, err := c.do(ctx, http.MethodPost, "/jobs", "", in, &j)
	return j, err
}

// List reads one page of jobs; token is the previous page's
// NextPageToken, empty for the first.
func (c *Client) List(ctx context.Context, limit int, token string) (JobList, error) {
	q := url.Values{}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if token != "" {
		q.Set("page_token", token)
	}
	path := "/jobs"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var l JobList
	_, err := c.do(ctx, http.MethodGet, path, "", nil, &l)
	return l, err
}

// ListAll reads every page of jobs.
func (c *Client) ListAll(ctx context.Context) ([]Job, error) {
	var all []Job
	token := ""
	for {
		page, err := c.List(ctx, 100, token)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Jobs...)
		if page.NextPageToken == "" || page.NextPageToken == token {
			return all, nil
		}
		token = page.NextPageToken
	}
}

// Get reads a job and its ETag, which a later Patch or Delete names.
func (c *Client) Get(ctx context.Context, id string) (Job, string, error) {
	var j Job
	etag, err := c.do(ctx, http.MethodGet, jobPath(id), "", nil, &j)
	return j, etag, err
}

// Patch changes a job if it is still at etag. A job changed since is an
// *APIError with status 412.
func (c *Client) Patch(ctx context.Context, id, etag string, p Patch) (Job, error) {
	var j Job
	_, err := c.do(ctx, http.MethodPatch, jobPath(id), etag, p, &j)
	return j, err
}

// Delete deletes a job at rest if it is still at etag (any version when
// etag is empty).
func (c *Client) Delete(ctx context.Context, id, etag string) error {
	_, err := c.do(ctx, http.MethodDelete, jobPath(id), etag, nil, nil)
	return err
}

func jobPath(id string) string { return "/jobs/" + url.PathEscape(id) }

// do sends one request and decodes a 2xx answer into out; it returns the
// answer's ETag.
func (c *Client) do(ctx context.Context, method, path, ifMatch string, in, out any) (string, error) {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return "", fmt.Errorf("encode the request: %w", err)
		}
	}
	u := c.base.String() + path
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("build the request %s %s: %w", method, u, err)
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	if c.agent != "" {
		req.Header.Set("User-Agent", c.agent)
	}
	if c.sign {
		if err := c.signRequest(ctx, req, body); err != nil {
			return "", err
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", &NetworkError{Method: method, URL: u, Err: err}
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return "", &NetworkError{Method: method, URL: u, Err: fmt.Errorf("reading the answer: %w", err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", apiError(method, u, resp, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return "", &BadAnswerError{Method: method, URL: u, Status: resp.StatusCode, Err: err}
		}
	}
	return resp.Header.Get("ETag"), nil
}

func (c *Client) signRequest(ctx context.Context, req *http.Request, body []byte) error {
	creds, err := c.creds.Retrieve(ctx)
	if err != nil {
		return &CredentialsError{Err: err}
	}
	sum := sha256.Sum256(body)
	return c.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "execute-api", c.region, time.Now())
}

func apiError(method, u string, resp *http.Response, raw []byte) *APIError {
	e := &APIError{Method: method, URL: u, Status: resp.StatusCode}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if (mt == "application/problem+json" || mt == "application/json") && json.Unmarshal(raw, &e.Problem) == nil && e.Problem.Detail != "" {
		return e
	}
	// Not a problem document: API Gateway's own refusals ({"message":
	// "Forbidden"}) and proxies' error pages.
	var gw struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &gw) == nil && gw.Message != "" {
		e.Problem = Problem{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode), Detail: gw.Message}
		return e
	}
	text := strings.TrimSpace(string(raw))
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	e.Problem = Problem{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode), Detail: text}
	return e
}
